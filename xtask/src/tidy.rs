//! Repository hygiene.
