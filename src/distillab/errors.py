"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""


class DistillabError(Exception):
    """Base class: anything raised with this type is the user's input, not our bug."""


class InputError(DistillabError):
    """A file, column or row is malformed; the message names which one and what to fix."""


class FingerprintMismatch(DistillabError):
    """A teacher cache (or other fingerprinted artifact) was made from different data, labels or model."""


class ConfigError(DistillabError):
    """An experiment config is invalid; the message lists every problem at once."""
