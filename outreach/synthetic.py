"""Synthetic cohorts for the demo, benchmarks and tests (no real person in them)."""
from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

# Area codes with one time zone each, so the zone guessed from the phone is exact.
AREA_CODES = ["416", "647", "613", "514", "604", "403", "902", "204", "306", "709"]
HEADER = ["patient_id", "phone", "discharge_date", "sms_consent", "alliance_1", "alliance_2", "alliance_3",
          "alliance_4", "alliance_5", "alliance_6", "timezone", "language", "age", "sex",
          "length_of_stay_days", "primary_substance", "program"]
SUBSTANCES = ["alcohol", "opioids", "cannabis", "stimulants", "benzodiazepines"]
PROGRAMS = ["residential", "day program", "withdrawal management"]


def latent_alliance(rng: random.Random) -> float:
    """Most patients rate the alliance high: a ceiling near 6."""
    return min(6.0, rng.gauss(5.2, 0.9))


def item_values(rng: random.Random, latent: float, blank_rate: float = 0.03) -> list[int | None]:
    values: list[int | None] = []
    for _ in range(6):
        if rng.random() < blank_rate:
            values.append(None)
        else:
            values.append(max(0, min(6, round(latent + rng.gauss(0, 0.6)))))
    return values


def fictional_phone(rng: random.Random, i: int, unique: bool = True) -> str:
    area = AREA_CODES[(i // 100) % len(AREA_CODES)] if unique else rng.choice(AREA_CODES)
    if unique and i < 100 * len(AREA_CODES):
        return f"({area}) 555-01{i % 100:02d}"  # reserved fictional range
    return f"{area}-{rng.randint(200, 989)}-{rng.randint(0, 9999):04d}"


def discharge_rows(n: int, seed: int = 1, today: dt.date | None = None, days_back: int = 400,
                   invalid: int = 0, day_ranges: list[tuple[int, int]] | None = None,
                   readmitted: float = 0.0) -> list[list[str]]:
    """``n`` valid discharge rows (+ ``invalid`` broken ones mixed in).

    Discharges are spread over the last ``days_back`` days, or evenly over ``day_ranges``
    (days ago, inclusive) so that chosen time points are due.

    ``readmitted`` (0 to 0.5) makes that share of the ``n`` rows second stays of earlier
    patients: same ``patient_id`` and phone, a later discharge date (never after ``today``),
    new alliance items.  They come after all first stays, as in a cumulative extract.  With
    the default 0.0 the output is the same as before the parameter existed."""
    if not 0.0 <= readmitted <= 0.5:
        raise ValueError("readmitted must be between 0 and 0.5 (one second stay per patient at most)")
    rng = random.Random(seed)
    today = today or dt.date.today()
    second = round(n * readmitted)
    rows = []
    for i in range(n - second):
        latent = latent_alliance(rng)
        items = item_values(rng, latent)
        lo, hi = day_ranges[i % len(day_ranges)] if day_ranges else (1, days_back)
        discharged = today - dt.timedelta(days=rng.randint(lo, hi))
        rows.append([
            f"P{i + 1:06d}", fictional_phone(rng, i), discharged.isoformat(),
            rng.choices(["yes", "no"], weights=[92, 8])[0],
            *["" if v is None else str(v) for v in items],
            "", rng.choices(["en", "fr"], weights=[80, 20])[0], str(rng.randint(19, 75)),
            rng.choice(["F", "M", "X"]), str(rng.randint(14, 60)), rng.choice(SUBSTANCES), rng.choice(PROGRAMS),
        ])
    if second:
        rows += _second_stays(rows, second, random.Random(f"readmitted-{seed}"), today)
    broken = [
        ("phone", "555-12"), ("discharge_date", (today + dt.timedelta(days=10)).isoformat()),
        ("alliance_3", "7"), ("timezone", "Mars/Olympus"), ("sms_consent", "maybe"),
        ("discharge_date", "2025-02-30"), ("language", "de"),
    ]
    for k in range(invalid):
        row = list(rows[rng.randrange(len(rows))]) if rows else [""] * len(HEADER)
        column, value = broken[k % len(broken)]
        row[0] = f"X{k + 1:05d}"
        row[HEADER.index(column)] = value
        rows.insert(rng.randrange(len(rows) + 1), row)
    return rows


def _second_stays(first: list[list[str]], count: int, rng: random.Random, today: dt.date) -> list[list[str]]:
    """One later stay for ``count`` of the patients in ``first`` (those discharged before ``today``).
    Patient fields are copied; the stay (discharge, alliance, length, substance, program) is new."""
    col = HEADER.index
    candidates = [r for r in first if dt.date.fromisoformat(r[col("discharge_date")]) < today]
    if count > len(candidates):
        raise ValueError(f"only {len(candidates)} patients were discharged before {today}; "
                         f"cannot give {count} of them a second stay")
    out = []
    for row in sorted(rng.sample(candidates, count), key=lambda r: r[0]):
        first_out = dt.date.fromisoformat(row[col("discharge_date")])
        gap = rng.randint(1, (today - first_out).days)  # first discharge -> second discharge
        stay = rng.randint(1, min(60, gap))  # admitted again after the first discharge
        items = item_values(rng, latent_alliance(rng))
        again = list(row)
        again[col("discharge_date")] = (first_out + dt.timedelta(days=gap)).isoformat()
        again[col("alliance_1"): col("alliance_6") + 1] = ["" if v is None else str(v) for v in items]
        again[col("length_of_stay_days")] = str(stay)
        if rng.random() < 0.3:  # most readmissions are for the same substance
            again[col("primary_substance")] = rng.choice(SUBSTANCES)
        again[col("program")] = rng.choice(PROGRAMS)
        out.append(again)
    return out


def write_discharges(path: Path, rows: list[list[str]]) -> Path:
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return Path(path)


def earlier_stay(row: list[str], rng: random.Random, days_before: int = 240) -> list[str]:
    """The same patient's earlier stay (a readmission seen from the later one): discharged ``days_before`` days
    before ``row``'s discharge, with its own alliance ratings and length of stay; its follow-up windows have
    passed by the later discharge, so it is never invited."""
    col = HEADER.index
    earlier = list(row)
    discharged = dt.date.fromisoformat(row[col("discharge_date")]) - dt.timedelta(days=days_before)
    earlier[col("discharge_date")] = discharged.isoformat()
    earlier[col("alliance_1"): col("alliance_6") + 1] = ["" if v is None else str(v)
                                                          for v in item_values(rng, latent_alliance(rng))]
    earlier[col("length_of_stay_days")] = str(rng.randint(14, 45))
    return earlier
