"""Single sign-on through the institution's OpenID Connect provider (issue 22)."""
from __future__ import annotations
