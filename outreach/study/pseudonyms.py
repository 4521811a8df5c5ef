"""The export's pseudonym of a participant: the first 16 hex characters of HMAC-SHA256(EXPORT_KEY, patient_id).

One definition, used by the export (``analysis.dataset``) and by the withdrawal's audit record, so that a researcher
holding an earlier export can find a withdrawn participant's rows in it."""
from __future__ import annotations

import hashlib
import hmac


def pseudonym(key: bytes, patient_id: object) -> str:
    return hmac.new(key, str(patient_id).encode("utf-8"), hashlib.sha256).hexdigest()[:16]
