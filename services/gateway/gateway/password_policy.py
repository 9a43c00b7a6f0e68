"""What a password must be: long, not a well-known one, not the account's email.

Plain Python; the list of common passwords ships beside this module
(common_passwords.txt) and is read once, on first use.
"""
from functools import lru_cache
from importlib import resources

MIN_LENGTH = 12
# argon2 hashes whatever it is given: bound the work one request can ask for.
MAX_LENGTH = 1024

TOO_SHORT = f"Use at least {MIN_LENGTH} characters."
TOO_LONG = f"Use at most {MAX_LENGTH} characters."
TOO_COMMON = "This password is one of the most common ones; choose another."
IS_EMAIL = "The password must not be your email address."


@lru_cache(maxsize=1)
def common_passwords():
    text = resources.files("gateway").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def password_problems(password, email=None):
    """The reasons ``password`` is refused (empty when it is acceptable)."""
    if len(password) < MIN_LENGTH:
        return [TOO_SHORT]
    if len(password) > MAX_LENGTH:
        return [TOO_LONG]
    folded = password.strip().lower()
    if email:
        email = email.strip().lower()
        # The address or its local part: both are the first guesses of anyone who knows the user.
        if folded in (email, email.partition("@")[0]):
            return [IS_EMAIL]
    if folded in common_passwords():
        return [TOO_COMMON]
    return []
