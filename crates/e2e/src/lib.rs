//! Helpers for the container tests in `tests/`.
