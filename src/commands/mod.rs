//! The subcommands, as thin entry points over the layers below: each turns its checked
//! configuration into a call to the input, the run or the emulator, and its outcome into an
//! exit code.

pub mod connect;
pub mod emulator;
pub mod export;
pub mod reconcile;
pub mod register;
pub mod shell;
pub mod validate;
