//! load
#![allow(dead_code, unused_variables, clippy::missing_errors_doc)]
use super::*;
/// Loads a manifest file.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let _ = path;
    Err(ManifestError::placeholder())
}
/// Loads from text.
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Manifest, ManifestError> {
    let _ = (path, text, env);
    Err(ManifestError::placeholder())
}
