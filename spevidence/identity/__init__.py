"""Identity: NHS number checks and keyed pseudonymisation (DESIGN.md section 5)."""

from spevidence.identity._files import PseudonymiseReport, pseudonymise_file
from spevidence.identity._key import KEY_ENV_VAR, MIN_KEY_BYTES, Key, load_key, pseudonymise
from spevidence.identity.nhs import is_valid_nhs_number

__all__ = [
    "KEY_ENV_VAR",
    "MIN_KEY_BYTES",
    "Key",
    "PseudonymiseReport",
    "is_valid_nhs_number",
    "load_key",
    "pseudonymise",
    "pseudonymise_file",
]
