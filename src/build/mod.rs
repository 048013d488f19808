//! Building a guard: the builder's setters ([`builder`]), the settings and
//! their validation ([`settings`], [`validate`]), and the assembly of the running parts
//! ([`assemble`]), shared by `build()` and the crate's own tests.

pub(crate) mod assemble;
pub(crate) mod builder;
pub(crate) mod settings;
pub(crate) mod validate;
