"""Writes the blind import-evaluation files and manifest.csv.

Written blind (without reading the importer or its tests) on 2026-12-06.
Run: python3 make_files.py   (rewrites files/ and manifest.csv in this folder)
"""
import csv
import datetime as dt
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "files")

REQ = ["patient_id", "phone", "discharge_date", "sms_consent",
       "alliance_1", "alliance_2", "alliance_3", "alliance_4", "alliance_5", "alliance_6"]
AL = REQ[4:]

# ---- global counters so ids/phones never repeat across files -------------
AREAS = ["416", "514", "613", "647", "905", "438"]
_k = [0]


def nxt():
    _k[0] += 1
    return _k[0]


def base_row(area=None, consent=None):
    k = nxt()
    a = area or AREAS[(k // 99) % len(AREAS)]
    last = 1 + (k % 99)
    d = dt.date(2026, 9, 1) + dt.timedelta(days=(k * 7) % 88)
    r = {
        "patient_id": "TOR-%05d" % (20000 + k),
        "phone": "%s-555-01%02d" % (a, last),
        "discharge_date": d.isoformat(),
        "sms_consent": consent or ("yes" if k % 3 else "no"),
    }
    for j, c in enumerate(AL):
        r[c] = str((k * 3 + j * 2) % 7)
    return r


def rows(n, **kw):
    return [base_row(**kw) for _ in range(n)]


def fmt_field(v, sep):
    if any(ch in v for ch in (sep, '"', "\n", "\r")):
        return '"' + v.replace('"', '""') + '"'
    return v


def render(header, body, sep=",", header_text=None, trailing=""):
    """body items: dict (keyed by column), list (raw fields) or str (raw line)."""
    out = [sep.join(header_text or header) + trailing]
    for r in body:
        if isinstance(r, str):
            out.append(r)
        elif isinstance(r, dict):
            out.append(sep.join(fmt_field(r.get(c, ""), sep) for c in header) + trailing)
        else:
            out.append(sep.join(fmt_field(v, sep) for v in r) + trailing)
    return out


MANIFEST = []


def write(name, lines, expect, bad_lines="", columns="", why="",
          eol="\n", encoding="utf-8", prefix=b"", final_eol=True):
    text = eol.join(lines) + (eol if final_eol else "")
    data = prefix + text.encode(encoding)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    MANIFEST.append([name, expect, bad_lines, columns, why])


def L(*idx):
    """data-row indexes (0-based) -> physical line numbers (header = line 1)."""
    return " ".join(str(i + 2) for i in idx)


def excel_serial(d):
    return str((d - dt.date(1899, 12, 30)).days)


# =========================== CLEAN FILES ==================================
r = rows(8)
phones = ["416-555-0111", "(416) 555-0112", "+1 416 555 0113", "4165550114",
          "1-514-555-0115", "613.555.0116", "+16135550117", "647 555 0118"]
cons = ["yes", "no", "oui", "non", "y", "n", "1", "0"]
for x, p, c in zip(r, phones, cons):
    x["phone"], x["sms_consent"] = p, c
r[2]["alliance_3"] = ""
r[5]["alliance_6"] = ""
r[0].update({c: "6" for c in AL}); r[1].update({c: "0" for c in AL})
write("basic_phone_formats.csv", render(REQ, r), "accept",
      why="Plain comma CSV; common North American phone layouts, all consent spellings, two blank alliance items.")

write("semicolon_french_excel.csv", render(REQ, rows(6, area="514", consent="oui"), sep=";"), "accept",
      why="Semicolon separator as French-locale Excel writes it; otherwise clean.")

write("utf8_bom.csv", render(REQ, rows(6)), "accept", prefix=b"\xef\xbb\xbf",
      why="Single UTF-8 byte-order mark before the header (Excel 'CSV UTF-8'); must not leak into the patient_id column name.")

write("windows_crlf.csv", render(REQ, rows(7)), "accept", eol="\r\n",
      why="Windows CRLF line endings; values must not keep a trailing carriage return.")

h = REQ + ["program"]
r = rows(5)
for x, p in zip(r, ["Detox, inpatient", "Day program, outpatient", "Residential",
                    'The "Bridge" program', "Withdrawal management, 7-day"]):
    x["program"] = p
write("quoted_program_commas.csv", render(h, r), "accept",
      why="Program names quoted because they contain commas or doubled quotes; standard CSV quoting.")

h = REQ + ["program", "language"]
r = rows(5, area="514")
for x, p in zip(r, ["Désintoxication", "Unité de réadaptation – résidentiel",
                    "Programme jeunesse (Montréal)", "Suivi externe – Québec", "Thérapie de groupe"]):
    x["program"], x["language"] = p, "fr"
write("french_accents_utf8.csv", render(h, r), "accept",
      why="UTF-8 French accents and an en dash in program names, language fr; must be stored exactly.")

h = ["episode_id", "patient_id", "admission_date", "discharge_date", "length_of_stay_days",
     "phone", "sms_consent", "primary_substance", "program", "timezone", "language", "age", "sex",
     "alliance_6", "alliance_5", "alliance_4", "alliance_3", "alliance_2", "alliance_1"]
r = rows(6)
subs = ["alcohol", "opioids", "cannabis", "stimulants", "alcohol", "opioids"]
tzs = ["America/Toronto", "America/Toronto", "America/Winnipeg", "America/Edmonton",
       "America/Vancouver", "America/Halifax"]
for i, x in enumerate(r):
    d = dt.date.fromisoformat(x["discharge_date"])
    los = [3, 7, 14, 21, 28, 45][i]
    x.update({"episode_id": "EP-%04d" % (500 + i), "admission_date": (d - dt.timedelta(days=los)).isoformat(),
              "length_of_stay_days": str(los), "primary_substance": subs[i], "program": "Residential",
              "timezone": tzs[i], "language": "en" if i % 2 else "fr", "age": str(24 + 7 * i),
              "sex": "F" if i % 2 else "M"})
write("optional_columns_reordered.csv", render(h, r), "accept",
      why="All optional columns present and required columns in a different order; stay lengths equal discharge minus admission.")

r = rows(5)
for x, p in zip(r, ["416-555-0123 ext 12", "416-555-0124 x12", "514-555-0125 poste 12",
                    "(613) 555-0126 ext 4", "416-555-0127"]):
    x["phone"] = p
write("phone_extensions.csv", render(REQ, r), "accept",
      why="Extensions written with an explicit marker (ext, x, poste); the extension must be kept, not merged into the number.")

h = ["episode_id"] + REQ
r = rows(6)
r[3]["patient_id"], r[3]["phone"] = r[0]["patient_id"], r[0]["phone"]
r[5]["patient_id"], r[5]["phone"] = r[1]["patient_id"], r[1]["phone"]
r[0]["discharge_date"], r[1]["discharge_date"] = "2026-09-02", "2026-09-10"
r[3]["discharge_date"], r[5]["discharge_date"] = "2026-11-20", "2026-11-24"
for i, x in enumerate(r):
    x["episode_id"] = "EP-%04d" % (700 + i)
write("same_patient_two_episodes.csv", render(h, r), "accept",
      why="Same patient discharged twice, each row has its own episode_id and the same phone; two legitimate episodes.")

r = rows(8)
for x, c in zip(r, ["Yes", "No", "TRUE", "FALSE", "Oui", "NON", "true", "false"]):
    x["sms_consent"] = c
write("consent_mixed_case.csv", render(REQ, r), "accept",
      why="Consent in capitalised forms Excel and people write (Yes, TRUE, NON); same meaning as lower case.")

# =========================== DAMAGED FILES ================================
def one(name, n, edits, expect, cols, why, header=REQ, **kw):
    r = rows(n)
    for i, col, val in edits:
        r[i][col] = val
    idx = sorted({e[0] for e in edits})
    write(name, render(header, r), expect, L(*idx), cols, why, **kw)


one("phone_letter_o.csv", 6, [(2, "phone", "416-555-O123"), (4, "phone", "514-555-01O5")], "refuse", "phone",
    "Letter O typed instead of zero; must not be silently read as 0.")
one("phone_vanity_letters.csv", 5, [(3, "phone", "1-800-FLOWERS")], "refuse", "phone",
    "Vanity number with letters (also toll-free); not a patient mobile number.")
one("phone_word_after_number.csv", 6, [(1, "phone", "416-555-0123 cell"), (4, "phone", "514-555-0145 home")],
    "refuse", "phone", "A word (cell, home) follows the number; the importer should not guess which text to drop.")

h = REQ + ["program"]
r = rows(6)
for x in r:
    x["program"] = "Residential"
body = render(h, r)
body[3] = body[3][: -len("Residential")] + '"Detox, inpatient'
write("unclosed_quote.csv", body, "refuse", "4", "program",
      "Unclosed quote on line 4 swallows the following rows into one field; rows 5-7 must not vanish silently.")

r = rows(6)
for i, x in enumerate(r):
    x["patient_id"] = str(4410023 + 17 * i)
r[1]["patient_id"] = "1.23457E+11"; r[3]["patient_id"] = "1.23457E+11"
write("id_excel_scientific.csv", render(REQ, r), "refuse", L(1, 3), "patient_id",
      "Long numeric ids (123456789012, 123457001234) shown by Excel as 1.23457E+11; digits lost, two patients collapse into one id.")

r = rows(6)
r[4]["patient_id"] = r[1]["patient_id"]
r[4]["phone"] = "613-555-0188"
write("duplicate_patient_different_phone.csv", render(REQ, r), "refuse", L(1, 4), "patient_id phone",
      "Same patient_id on two rows with different phones and no episode_id; which phone is current is unknown.")

one("date_placeholder_1899.csv", 5, [(2, "discharge_date", "1899-12-30")], "refuse", "discharge_date",
    "1899-12-30 is Excel's zero date, a placeholder not a discharge.")
one("date_placeholder_1900.csv", 6, [(1, "discharge_date", "1900-01-01"), (5, "discharge_date", "1900-01-01")],
    "refuse", "discharge_date", "1900-01-01 is a default/placeholder date from the hospital system.")
one("date_placeholder_9999.csv", 5, [(3, "discharge_date", "9999-12-31")], "refuse", "discharge_date",
    "9999-12-31 means 'not discharged yet / open episode' in many systems.")

h = REQ + ["admission_date"]
r = rows(6)
for x in r:
    x["admission_date"] = (dt.date.fromisoformat(x["discharge_date"]) - dt.timedelta(days=10)).isoformat()
r[2]["admission_date"] = "2026-11-20"; r[2]["discharge_date"] = "2026-11-02"
write("admission_after_discharge.csv", render(h, r), "refuse", L(2), "admission_date discharge_date",
      "Admission 18 days after discharge: negative length of stay, one of the dates is wrong.")

h = REQ + ["admission_date"]
r = rows(6)
for x in r:
    x["admission_date"] = (dt.date.fromisoformat(x["discharge_date"]) - dt.timedelta(days=12)).isoformat()
r[3]["admission_date"] = "1975-06-01"
write("stay_of_fifty_years.csv", render(h, r), "warn", L(3), "admission_date",
      "Admission in 1975 for a 2026 discharge implies a 51-year stay; almost surely a wrong date.")

h = REQ + ["timezone"]
r = rows(6)
for x in r:
    x["timezone"] = "America/Toronto"
r[1]["timezone"] = "EST"; r[3]["timezone"] = "MST"
write("timezone_abbreviations.csv", render(h, r), "refuse", L(1, 3), "timezone",
      "EST/MST are abbreviations (fixed offsets with no daylight time), not the IANA zone the patient lives in.")

one("phone_toll_free.csv", 6, [(1, "phone", "1-800-555-0142"), (3, "phone", "888-555-0150"), (4, "phone", "(877) 555-0177")],
    "refuse", "phone", "Toll-free numbers (800/888/877) are switchboards, not a patient's phone.")

write("trailing_separator.csv", render(REQ, rows(6), trailing=","), "accept_or_warn",
      why="Every line, header included, ends with a comma (empty unnamed last column); no data is lost.")

write("header_spaces_capitals.csv",
      render(REQ, rows(5), header_text=["Patient ID", "Phone", "Discharge Date", "SMS Consent"] +
             ["Alliance %d" % i for i in range(1, 7)]),
      "refuse", "", "patient_id",
      "Header names written 'Patient ID', 'Discharge Date' etc.; do not match the required names.")

write("mac_cr_line_endings.csv", render(REQ, rows(6)), "accept_or_warn", eol="\r",
      why="Old Mac CR-only line endings; must be read as 7 lines, never as one giant row.")

write("double_bom.csv", render(REQ, rows(5)), "accept_or_warn", prefix=b"\xef\xbb\xbf\xef\xbb\xbf",
      why="Two UTF-8 byte-order marks; the second must not silently become part of the first column name.")

h = REQ + ["program"]
r = rows(6)
for x in r:
    x["program"] = "Residential"
r[2]["program"] = "Désintoxication"
write("latin1_windows1252.csv", render(h, r), "refuse", L(2), "program", encoding="cp1252",
      why="Saved as Windows-1252: 'é' is byte 0xE9, invalid UTF-8; must not be stored as a replacement character.")

h = REQ + ["program"]
r = rows(6)
for x in r:
    x["program"] = "Residential"
r[2]["program"] = "Désintoxication".encode("utf-8").decode("latin-1")
r[4]["program"] = "Unité de réadaptation".encode("utf-8").decode("latin-1")
write("mojibake_round_trip.csv", render(h, r), "warn", L(2, 4), "program",
      "UTF-8 -> Latin-1 -> UTF-8 round trip left 'DÃ©sintoxication'; valid bytes but clearly garbled text.")

r = rows(6)
for x, d in zip(r, ["03/04/2026", "05/11/2026", "10/09/2026", "01/02/2026", "07/08/2026", "11/10/2026"]):
    x["discharge_date"] = d
write("dates_day_month_ambiguous.csv", render(REQ, r), "refuse", L(0, 1, 2, 3, 4, 5), "discharge_date",
      "Dates like 03/04/2026 can be 3 April or 4 March; must be refused, not guessed.")

one("dates_excel_serial.csv", 6, [(1, "discharge_date", excel_serial(dt.date(2026, 11, 3))),
                                  (4, "discharge_date", excel_serial(dt.date(2026, 10, 15)))],
    "refuse", "discharge_date", "Excel serial day numbers (46329) instead of dates; 1900 vs 1904 epoch makes them a guess.")

one("consent_maybe.csv", 6, [(2, "sms_consent", "maybe"), (4, "sms_consent", "unknown")], "refuse", "sms_consent",
    "Consent answered 'maybe'/'unknown'; neither yes nor no, must never default to yes.")
one("consent_trailing_space.csv", 6, [(1, "sms_consent", "Y "), (3, "sms_consent", "N ")], "accept_or_warn", "sms_consent",
    "Fixed-width export padded 'Y ' and 'N '; meaning is clear once the space is trimmed.")

one("alliance_out_of_range_7.csv", 5, [(2, "alliance_2", "7")], "refuse", "alliance_2",
    "Alliance item 7 is outside the 0-6 scale (maybe a 1-7 version of the questionnaire).")
one("alliance_negative.csv", 5, [(1, "alliance_5", "-1")], "refuse", "alliance_5",
    "Alliance item -1 is a missing-value code from the hospital system, not a score.")
one("alliance_decimal.csv", 6, [(3, "alliance_1", "3.5")], "refuse", "alliance_1",
    "Alliance item 3.5 is not a whole number; must not be rounded or truncated.")
one("alliance_na_text.csv", 6, [(2, "alliance_3", "N/A"), (4, "alliance_6", "N/A")], "refuse", "alliance_3 alliance_6",
    "Alliance item written 'N/A' instead of left blank; text in a numeric score.")

body = render(REQ, rows(6))
body.insert(4, "")
write("blank_line_middle.csv", body, "accept_or_warn", "5", "",
      "An empty line 5 between rows; all six patients must still be imported, none dropped after it.")

body = render(REQ, rows(6))
body.append("Total: 6")
write("totals_footer_row.csv", body, "refuse", "8", "",
      "Report footer 'Total: 6' on the last line; must not be imported as a patient.")

body = render(REQ, rows(3)) + render(REQ, rows(4))
write("header_repeated_middle.csv", body, "refuse", "5", "",
      "Two exports pasted together: the header reappears on line 5; that line is not a patient.")

r = rows(6)
body = render(REQ, r)
f = body[3].split(",")
body[3] = ",".join(f[:2] + [""] + f[2:])
write("extra_comma_shifts_row.csv", body, "refuse", "4", "",
      "An extra comma on line 4 shifts every value one column right (11 fields for 10 columns).")

r = rows(6)
body = render(REQ, r)
body[4] = ",".join(body[4].split(",")[:-1])
write("missing_field_row.csv", body, "refuse", "5", "",
      "Line 5 has only 9 fields; the last alliance item is missing its separator, so alignment is unknown.")

one("phone_nbsp.csv", 6, [(1, "phone", "416\u00a0555\u00a00123"), (3, "phone", "(514)\u00a0555-0134")],
    "accept_or_warn", "phone",
    "Non-breaking spaces inside phone numbers (copied from a web page or Word); digits are intact.")

one("phone_leading_apostrophe.csv", 6, [(0, "phone", "'4165550101"), (2, "phone", "'5145550133"), (4, "phone", "'6135550155")],
    "accept_or_warn", "phone",
    "Excel text-prefix apostrophe kept before the number; digits are intact.")

write("tab_separated.csv", render(REQ, rows(6), sep="\t"), "accept_or_warn",
      why="Tab-separated file saved with a .csv name; must be read with tabs or refused, never as one column.")

one("phone_seven_digits.csv", 5, [(2, "phone", "555-0104")], "refuse", "phone",
    "Seven-digit local number without area code; the region cannot be guessed.")
one("phone_international.csv", 5, [(3, "phone", "+44 20 7946 0105")], "refuse", "phone",
    "UK number; not a North American number the study can text.")
one("phone_excel_scientific.csv", 6, [(1, "phone", "4.16556E+09"), (4, "phone", "5.14556E+09")], "refuse", "phone",
    "Phone number turned into scientific notation by Excel; last digits lost.")
one("phone_two_numbers_in_cell.csv", 5, [(2, "phone", "416-555-0104 / 514-555-0144")], "refuse", "phone",
    "Two phone numbers in one cell; which one to text is unknown.")
one("phone_invalid_area_code.csv", 6, [(1, "phone", "123-555-0103"), (3, "phone", "911-555-0105")], "refuse", "phone",
    "Area codes 123 and 911 do not exist in North America (cannot start with 1, N11 reserved).")
one("phone_extension_without_marker.csv", 5, [(2, "phone", "416-555-0104 12")], "refuse", "phone",
    "Trailing '12' after the number with no ext/x/poste; could be an extension or a typo.")

h = [c for c in REQ if c != "sms_consent"]
write("missing_required_column.csv", render(h, rows(5)), "refuse", "", "sms_consent",
      "The sms_consent column is absent; consent must never be assumed.")

h = REQ + ["phone"]
r = rows(5)
body = [",".join(h)]
for i, x in enumerate(r):
    body.append(",".join([x[c] for c in REQ] + ["905-555-01%02d" % (60 + i)]))
write("duplicate_column_phone.csv", body, "refuse", "", "phone",
      "Two columns both named phone with different numbers; which is the patient's is unknown.")

one("blank_patient_id.csv", 6, [(3, "patient_id", "")], "refuse", "patient_id",
    "Row without a patient id cannot be linked to anyone.")
one("blank_consent.csv", 6, [(2, "sms_consent", "")], "refuse", "sms_consent",
    "Consent left blank; must not default to yes or no.")
one("date_excel_error_values.csv", 6, [(1, "discharge_date", "#VALUE!"), (4, "discharge_date", "#N/A")],
    "refuse", "discharge_date", "Excel formula errors exported as text in the date column.")
one("date_impossible_calendar.csv", 6, [(2, "discharge_date", "2026-02-30"), (4, "discharge_date", "2026-04-31")],
    "refuse", "discharge_date", "February 30 and April 31 do not exist; must not roll over to March/May.")

r = rows(5)
r[1]["alliance_4"] = "3,5"
write("decimal_comma_semicolon.csv", render(REQ, r, sep=";"), "refuse", L(1), "alliance_4",
      "French-locale Excel wrote 3,5 (decimal comma) as an alliance score; not a whole number.")

h = REQ + ["length_of_stay_days"]
r = rows(6)
for i, x in enumerate(r):
    x["length_of_stay_days"] = str(5 + 4 * i)
r[1]["length_of_stay_days"] = "3.5"; r[3]["length_of_stay_days"] = "12 days"
write("length_of_stay_not_integer.csv", render(h, r), "refuse", L(1, 3), "length_of_stay_days",
      "Length of stay written 3.5 and '12 days'; not a whole number of days.")

with open(os.path.join(HERE, "manifest.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["file", "expect", "lines", "columns", "why"])
    for m in MANIFEST:
        w.writerow(["files/" + m[0]] + m[1:])
print(len(MANIFEST), "files")
