//! The subcommands, as thin entry points over the layers below: each turns its checked
//! configuration into a call to the input, the run or the emulator, and its outcome into an
//! exit code.

pub mod emulator;
pub mod register;
pub mod validate;
