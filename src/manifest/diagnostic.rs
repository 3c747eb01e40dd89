//! diagnostic
/// A problem.
#[derive(Debug)]
pub struct Diagnostic;
/// Error.
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct ManifestError;
impl ManifestError {
    pub(crate) fn placeholder() -> Self {
        ManifestError
    }
}
