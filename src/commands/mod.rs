//! The subcommands, as thin entry points over the layers below: each turns its checked
//! configuration into a call to the input, the run or the emulator, and its outcome into an
//! exit code. `listing` is the account's SIM list, page by page, that `export` and
//! `reconcile` share.

pub(crate) mod check;
pub(crate) mod connect;
pub(crate) mod emulator;
pub(crate) mod export;
pub(crate) mod listing;
pub(crate) mod reconcile;
pub(crate) mod register;
pub(crate) mod shell;
pub(crate) mod validate;

/// Standard output, where a reader that went away (`| head -1`) is not an error: once the
/// pipe is closed, the rest of the output is dropped quietly and the command goes on to
/// finish its work and exit with its own code.
pub(crate) struct Stdout<W: std::io::Write> {
    out: W,
    closed: bool,
}

impl Stdout<std::io::StdoutLock<'static>> {
    pub(crate) fn lock() -> Self {
        Stdout::new(std::io::stdout().lock())
    }
}

impl<W: std::io::Write> Stdout<W> {
    pub(crate) fn new(out: W) -> Self {
        Stdout { out, closed: false }
    }

    fn closed_pipe<T>(&mut self, done: std::io::Result<T>, or: T) -> std::io::Result<T> {
        match done {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(or)
            }
            other => other,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let done = self.out.write(buf);
        self.closed_pipe(done, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let done = self.out.flush();
        self.closed_pipe(done, ())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::Stdout;

    struct ClosedPipe(usize);

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.0 += 1;
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_is_written_to_once_then_quietly_skipped() {
        let mut out = Stdout::new(ClosedPipe(0));
        writeln!(out, "summary").unwrap();
        writeln!(out, "more").unwrap();
        out.flush().unwrap();
        assert_eq!(out.out.0, 1);
        let mut other = Stdout::new(std::io::Cursor::new([0u8; 2]));
        assert!(
            writeln!(other, "too long for the buffer").is_err(),
            "other errors stay errors"
        );
    }
}
