//! The one configuration dialect of every binary (agent, collector, CLI, demo): how a duration
//! is written in a flag, an environment variable or a config file ([`ConfigDuration`]), and the
//! defaults they share ([`defaults`]), so `--interval 2s` means the same everywhere and a
//! default changes in one place.

pub mod defaults;
mod duration;

pub use duration::{ConfigDuration, DurationError};
