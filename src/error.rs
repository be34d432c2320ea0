//! Errors that reach the user, and their exit codes: 0 ok, 1 failed, 2 bad input.
//! The error is printed once, in `main`, as `error: …` plus an optional `help: …` line.

use std::fmt;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// `status`: the command worked, but a node is not healthy.
pub const EXIT_UNHEALTHY: u8 = 3;

/// A failure with a hint for the user and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
    pub code: u8,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            code: EXIT_FAILED,
        }
    }

    /// Bad input: exit code 2.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_BAD_INPUT,
            ..Failure::new(message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// "Exit with this code; the reason was already printed" (e.g. by a child kubicluster).
#[derive(Debug)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Exit code and hint for any error that reaches `main`.
pub fn classify(err: &anyhow::Error) -> (u8, Option<String>) {
    // A Failure given as context (`e.context(Failure::new(…))`), at any layer.
    if let Some(f) = err.downcast_ref::<Failure>() {
        return (f.code, f.hint.clone());
    }
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return (f.code, f.hint.clone());
        }
        if let Some(s) = cause.downcast_ref::<crate::spec::SpecError>() {
            return (EXIT_BAD_INPUT, s.hint());
        }
    }
    (EXIT_FAILED, None)
}
