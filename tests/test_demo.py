"""The demo runs the whole cycle on a fresh SQLite database and says where its files are."""
import re

from outreach.demo import run_demo


def test_demo_runs_the_whole_cycle(tmp_path):
    lines: list[str] = []
    from analysis.summary import analyse_demo
    from webhooks.app import create_app

    run_demo(tmp_path / "demo", app_factory=create_app, analyse=analyse_demo, patients=80, seed=3,
             echo=lines.append)
    out = "\n".join(lines)
    assert "imported 80 new" in out and "rejected 6" in out
    assert "30-day wave 1:" in out and "90-day wave 2:" in out
    assert "wave 1 (30-day): targeted" in out and "completed" in out
    assert "open crisis alerts: #1" in out  # the one simulated crisis message reached the coordinators
    assert "texted to the coordinator on call (+1******0100): Recovery Study: crisis alert #1 opened" in out
    assert (tmp_path / "demo" / "outreach.db").exists() and f"Files are in {tmp_path / 'demo'}/" in out
    assert (tmp_path / "demo" / "report" / "report.html").exists() and (tmp_path / "demo" / "results.csv").exists()
    assert "Spearman rho, alliance vs self efficacy" in out
    assert not re.search(r"\+1\d{10}", out)  # every phone number masked
