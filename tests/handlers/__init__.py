"""Handler modules the tests register, as a user's package would."""
