"""The faceprint vault: envelope-encrypted reference faceprints, crypto-shredded on erasure.

with open_vault(settings) as vault:
    fp = vault.store("S-1", vector, reference="enrollments/S-1/a.jpg", model_version="dlib-r1")
    vault.faceprints("S-1")            # decrypted, in memory
    receipt = vault.destroy_subject("S-1")
"""

from .crypto import FaceprintPayload
from .errors import MasterKeyError, UndecryptableError, VaultError, VaultUnavailable
from .master import MasterKey, MasterKeyring, generate_master_key, load_master_keyring
from .sqlite import SqliteBlobStore, SqliteKeyStore
from .store import BlobStore, KeyStore, SealedFaceprint, WrappedKey
from .vault import (
    DestructionReceipt,
    Faceprint,
    FaceprintVault,
    RotationReport,
    faceprint_id,
    open_vault,
    vault_dir,
)

__all__ = [
    "BlobStore",
    "DestructionReceipt",
    "Faceprint",
    "FaceprintPayload",
    "FaceprintVault",
    "KeyStore",
    "MasterKey",
    "MasterKeyError",
    "MasterKeyring",
    "RotationReport",
    "SealedFaceprint",
    "SqliteBlobStore",
    "SqliteKeyStore",
    "UndecryptableError",
    "VaultError",
    "VaultUnavailable",
    "WrappedKey",
    "faceprint_id",
    "generate_master_key",
    "load_master_keyring",
    "open_vault",
    "vault_dir",
]
