//! Console tests (SPEC §12): filled in by the section's author.
