//! Cross-checks against libsignal-node (Baileys' dependency) vectors, and the local invariants
//! of the public API: byte-exact reproduction with libsignal's seeded keys, state untouched
//! after failures, bounds, duplicates rejected, random interleavings, decoders never panic.

mod interleave;
mod libsignal;
mod robust;
mod support;
