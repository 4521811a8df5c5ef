"""The learned crisis model was trained on the files as they are: a text added to the corpus or a batch (or one
corrected) without training again would leave the shipped model answering for data it never saw, and its recorded
cross-validated figures wrong.  `python benchmarks/train_crisis_model.py` trains it again."""
import hashlib
import json
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_training_file_is_the_one_the_model_was_trained_on():
    data = json.loads((resources.files("conversations") / "data" / "crisis_model.json").read_text("utf-8"))
    files = [f for source in data["training"]["sources"] for f in source["files"]]
    assert files
    changed = [f["path"] for f in files
               if hashlib.sha256((ROOT / f["path"]).read_bytes()).hexdigest() != f["sha256"]]
    assert not changed, f"changed since the model was trained (run benchmarks/train_crisis_model.py): {changed}"
