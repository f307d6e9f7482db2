"""Privacy officers: who may grant, withdraw, enroll and erase (design invariant 8).

An officer has an Ed25519 key; the workers trust the public keys in a registry file the
operator controls. A consent change, enrollment or erasure request takes effect only with a
registered, unrevoked officer's signature over the record.

    key = load_key(path, passphrase)            # or unlock(settings, officer_id, ask)
    change = sign(change, key)                  # recorded_by = officer id, signed_by = key id
    officer = verify(message_bytes, change, RegistryFile(path).current(), now)
"""

from .keys import OfficerKey, OfficerKeyError, key_id_of, load_key, needs_passphrase, save_key
from .local import (
    add_officer,
    ensure_first_officer,
    find_key,
    first_officer_notice,
    key_dir,
    key_path,
    officers,
    registry_path,
    revoke_officer,
    unlock,
)
from .registry import (
    MAY_SIGN,
    Officer,
    OfficerRegistry,
    RegistryError,
    RegistryFile,
    RegistryUnavailable,
    Role,
    load_registry,
    save_registry,
)
from .signing import SIGNER_FIELDS, Refusal, SignatureRefused, sign, verify

__all__ = [
    "MAY_SIGN",
    "SIGNER_FIELDS",
    "Officer",
    "OfficerKey",
    "OfficerKeyError",
    "OfficerRegistry",
    "Refusal",
    "RegistryError",
    "RegistryFile",
    "RegistryUnavailable",
    "Role",
    "SignatureRefused",
    "add_officer",
    "ensure_first_officer",
    "find_key",
    "first_officer_notice",
    "key_dir",
    "key_id_of",
    "key_path",
    "load_key",
    "load_registry",
    "needs_passphrase",
    "officers",
    "registry_path",
    "revoke_officer",
    "save_key",
    "save_registry",
    "sign",
    "unlock",
    "verify",
]
