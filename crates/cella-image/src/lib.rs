//! Runtime images: see `docs/images.md`.
