"""``SecretBox`` (MultiFernet over ``CLOSERDESK_ENCRYPTION_KEYS``) and the production check."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from closerdesk.app import create_app
from closerdesk.config import DEFAULT_ENCRYPTION_KEY, Settings
from closerdesk.kit.secrets import (
    InvalidEncryptionKeys,
    SecretBox,
    UndecryptableSecret,
    generate_key,
    secret_box,
)

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_a_string_goes_in_and_out_and_is_not_readable_in_between() -> None:
    box = SecretBox([NEW])
    token = box.encrypt("whsec_c2VjcmV0")
    assert "whsec" not in token
    assert "c2VjcmV0" not in token
    assert box.decrypt(token) == "whsec_c2VjcmV0"
    assert box.encrypt("whsec_c2VjcmV0") != token  # a fresh IV every time


def test_a_credential_map_goes_in_and_out() -> None:
    box = SecretBox([NEW])
    values = {"url": "https://dav.example.test/", "username": "ana", "password": "p@ss wörd"}
    token = box.encrypt_json(values)
    assert "p@ss" not in token
    assert box.decrypt_json(token) == values


def test_a_token_that_is_not_a_map_of_strings_is_refused() -> None:
    box = SecretBox([NEW])
    for clear in ("[1, 2]", '{"port": 8443}', "not json"):
        with pytest.raises(UndecryptableSecret, match="credential map"):
            box.decrypt_json(box.encrypt(clear))


def test_old_tokens_open_while_the_old_key_is_second_and_rotate_moves_them() -> None:
    old_token = SecretBox([OLD]).encrypt("whsec_old")
    both = SecretBox([NEW, OLD])
    assert both.decrypt(old_token) == "whsec_old"
    assert not both.is_current(old_token)
    assert both.is_current(both.encrypt("x"))  # the first key encrypts

    rotated = both.rotate(old_token)
    assert both.is_current(rotated)
    assert SecretBox([NEW]).decrypt(rotated) == "whsec_old"
    with pytest.raises(UndecryptableSecret):
        SecretBox([OLD]).decrypt(rotated)


def test_a_token_no_key_opens_is_a_clear_error() -> None:
    token = SecretBox([OLD]).encrypt("whsec_old")
    with pytest.raises(UndecryptableSecret) as caught:
        SecretBox([NEW]).decrypt(token, what="the signing secret")
    assert str(caught.value) == (
        "the signing secret cannot be decrypted with any key in CLOSERDESK_ENCRYPTION_KEYS; "
        "add the key it was encrypted with (after the first one)"
    )
    with pytest.raises(UndecryptableSecret):
        SecretBox([NEW]).decrypt("whsec_plain_text_never_encrypted")
    with pytest.raises(UndecryptableSecret):
        SecretBox([NEW]).rotate(token)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "CLOSERDESK_ENCRYPTION_KEYS is empty"),
        (" , ", "CLOSERDESK_ENCRYPTION_KEYS is empty"),
        ("not-a-key", "CLOSERDESK_ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key"),
        (f"{NEW},tooshort", "CLOSERDESK_ENCRYPTION_KEYS: key 2 of 2 is not a Fernet key"),
    ],
)
def test_invalid_key_text_is_a_clear_error(keys: str, message: str) -> None:
    settings = Settings(encryption_keys=SecretStr(keys))
    with pytest.raises(InvalidEncryptionKeys, match=message) as caught:
        secret_box(settings)
    assert "tooshort" not in str(caught.value)  # a key never ends up in a message
    with pytest.raises(InvalidEncryptionKeys):
        create_app(settings)


def test_keys_are_split_on_commas_and_trimmed() -> None:
    settings = Settings(encryption_keys=SecretStr(f" {NEW} ,{OLD},"))
    assert settings.encryption_key_list == [NEW, OLD]
    assert secret_box(settings).key_count == 2
    assert secret_box(settings) is secret_box(settings.model_copy())  # built once per key list
    assert NEW not in repr(settings)


def test_the_development_default_works_outside_production() -> None:
    settings = Settings()
    assert settings.encryption_key_list == [DEFAULT_ENCRYPTION_KEY]
    box = secret_box(settings)
    assert box.decrypt(box.encrypt("x")) == "x"
    settings.check_production_ready()


@pytest.mark.parametrize(
    "keys",
    ["", DEFAULT_ENCRYPTION_KEY, f"{NEW},{DEFAULT_ENCRYPTION_KEY}"],
    ids=["none", "the-default", "the-default-second"],
)
def test_production_refuses_no_key_or_the_development_key(keys: str) -> None:
    settings = Settings(
        env="production", secret_key="0123456789abcdef" * 4, encryption_keys=SecretStr(keys)
    )
    with pytest.raises(RuntimeError, match=r"^CLOSERDESK_ENCRYPTION_KEYS must hold your own"):
        settings.check_production_ready()
    with pytest.raises(RuntimeError, match="CLOSERDESK_ENCRYPTION_KEYS"):
        create_app(settings)


def test_production_runs_with_its_own_keys() -> None:
    settings = Settings(
        env="production",
        secret_key="0123456789abcdef" * 4,
        encryption_keys=SecretStr(f"{NEW},{OLD}"),
    )
    settings.check_production_ready()


def test_generated_keys_are_fresh_fernet_keys() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert SecretBox([first, second]).decrypt(SecretBox([second]).encrypt("x")) == "x"
