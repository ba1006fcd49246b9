//! `pgsplit config-reference`: the README's configuration reference, generated from proxy.toml so the two cannot drift.

pub mod reference;

use std::path::PathBuf;
use thiserror::Error;

/// Where the generated reference sits in the README.
pub const BEGIN: &str = "<!-- BEGIN config-reference: generated from proxy.toml by `make readme` (pgsplit config-reference --write README.md); edit proxy.toml, not this table -->";
pub const END: &str = "<!-- END config-reference -->";

/// The one command that regenerates the README's reference.
pub const REGENERATE: &str = "make readme";

#[derive(clap::Args, Debug, Clone)]
pub struct ConfigReferenceArgs {
    /// The documented configuration file to read.
    #[arg(long, default_value = "proxy.toml")]
    pub config: PathBuf,
    /// Replace the reference between the markers in this Markdown file instead of printing it.
    #[arg(long, value_name = "README")]
    pub write: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum DocsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} lacks the markers the reference goes between:\n{BEGIN}\n{END}")]
    NoMarkers { path: PathBuf },
}

/// The Markdown reference for the configuration text `toml`.
pub fn reference_markdown(toml: &str) -> String {
    reference::markdown(&reference::parse(toml))
}

/// `readme` with the text between the markers replaced by `reference`; None without markers.
pub fn splice(readme: &str, reference: &str) -> Option<String> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = start + readme[start..].find(END)?;
    Some(format!(
        "{}\n\n{}{}",
        &readme[..start],
        reference,
        &readme[end..]
    ))
}

/// The text currently between the markers, as `splice` writes it.
pub fn current(readme: &str) -> Option<&str> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = start + readme[start..].find(END)?;
    Some(&readme[start..end])
}

pub fn run(args: &ConfigReferenceArgs) -> Result<(), DocsError> {
    let toml = std::fs::read_to_string(&args.config).map_err(|source| DocsError::Read {
        path: args.config.clone(),
        source,
    })?;
    let reference = reference_markdown(&toml);
    let Some(path) = &args.write else {
        print!("{reference}");
        return Ok(());
    };
    let readme = std::fs::read_to_string(path).map_err(|source| DocsError::Read {
        path: path.clone(),
        source,
    })?;
    let updated =
        splice(&readme, &reference).ok_or_else(|| DocsError::NoMarkers { path: path.clone() })?;
    if updated != readme {
        std::fs::write(path, updated).map_err(|source| DocsError::Write {
            path: path.clone(),
            source,
        })?;
        println!("updated the configuration reference in {}", path.display());
    } else {
        println!("{} is up to date", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let readme = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let new = splice(&readme, "| a |\n").unwrap();
        assert_eq!(new, format!("intro\n{BEGIN}\n\n| a |\n{END}\noutro\n"));
        assert_eq!(current(&new), Some("\n\n| a |\n"));
        assert_eq!(splice(&new, "| a |\n").unwrap(), new);
        assert!(splice("no markers", "x").is_none());
    }
}
