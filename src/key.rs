//! The domain's keys: what the manifest wants, as plan, execution, state, verify and the CLI
//! name it. Knows nothing of files or HTTP.

/// A (sub account, token name) pair: one token the manifest wants.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TokenKey {
    /// The sub account's id.
    pub account_id: u32,
    /// The token's name.
    pub token_name: String,
}

impl std::fmt::Display for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account_id, self.token_name)
    }
}

/// One thing a run creates: an item of the executor. Each kind has its own key; the journal
/// writes token records with their [`CreateKind`] and sub-account records as their own kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CreateKey {
    /// A sub account's API token.
    Token(TokenKey),
    /// A sub account, by the name the manifest gives it (its id comes with its create).
    Account(String),
}

impl CreateKey {
    /// The token this key names, when it names one.
    pub fn as_token(&self) -> Option<&TokenKey> {
        match self {
            CreateKey::Token(k) => Some(k),
            CreateKey::Account(_) => None,
        }
    }

    /// The sub account this key names, when it names one to create.
    pub fn as_account(&self) -> Option<&str> {
        match self {
            CreateKey::Account(name) => Some(name),
            CreateKey::Token(_) => None,
        }
    }
}

impl From<TokenKey> for CreateKey {
    fn from(k: TokenKey) -> CreateKey {
        CreateKey::Token(k)
    }
}

impl From<&TokenKey> for CreateKey {
    fn from(k: &TokenKey) -> CreateKey {
        CreateKey::Token(k.clone())
    }
}

impl std::fmt::Display for CreateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateKey::Token(k) => k.fmt(f),
            CreateKey::Account(name) => write!(f, "sub account {name}"),
        }
    }
}

/// The kind of thing a [`CreateKey`] names, as journal records write it (`"create"`; absent in
/// journals written before there was more than one kind, which read as tokens).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CreateKind {
    /// A sub account's API token.
    #[default]
    Token,
}

impl CreateKind {
    /// Whether this is the kind a record without the field means (it is then not written, so
    /// that a journal of tokens reads as it always did).
    pub fn is_default(&self) -> bool {
        *self == CreateKind::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_show_as_account_and_name() {
        let k = TokenKey {
            account_id: 7,
            token_name: "ci".into(),
        };
        assert_eq!(k.to_string(), "7/ci");
        let c = CreateKey::from(k.clone());
        assert_eq!(c.to_string(), "7/ci");
        assert_eq!(c.as_token(), Some(&k));
        assert_eq!(c.as_account(), None);
        let a = CreateKey::Account("team-a".into());
        assert_eq!(a.to_string(), "sub account team-a");
        assert_eq!(a.as_account(), Some("team-a"));
    }

    #[test]
    fn the_kind_is_written_in_snake_case_and_tokens_are_the_default() {
        assert_eq!(
            serde_json::to_string(&CreateKind::Token).unwrap_or_default(),
            "\"token\""
        );
        assert!(CreateKind::default().is_default());
    }
}
