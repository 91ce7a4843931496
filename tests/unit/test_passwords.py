"""Engineer password hashes for SMTP AUTH."""

from mailticket.config.passwords import hash_password, is_valid_hash, verify_password


def test_hash_verifies_and_wrong_password_fails() -> None:
    stored = hash_password("correct horse")
    assert is_valid_hash(stored)
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)


def test_same_password_gets_different_salts() -> None:
    assert hash_password("x" * 10) != hash_password("x" * 10)


def test_malformed_hashes_never_match() -> None:
    for stored in ("", "plain", "scrypt$1$2$3$$", "md5$a$b$c$d$e", "scrypt$x$8$1$AA$BB"):
        assert not verify_password("anything", stored)
        assert not is_valid_hash(stored) or stored.startswith("scrypt$")
