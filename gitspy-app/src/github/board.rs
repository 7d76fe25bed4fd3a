//! PLACEHOLDER until the fold branch lands (replaced wholesale at merge).
use super::fold::CardState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Backlog,
    Todo,
    InProgress,
    Review,
    Done,
}
pub fn column(_card: &CardState) -> Option<Column> {
    Some(Column::Backlog)
}
pub struct Board {
    pub repo: String,
    pub json: Vec<u8>,
    pub digest: String,
    pub counts: BTreeMap<Column, usize>,
}
pub fn render<'a>(repo: &str, cards: impl IntoIterator<Item = (i64, &'a CardState)>) -> Board {
    let n = cards.into_iter().count();
    Board {
        repo: repo.to_owned(),
        json: format!("{{\"repo\":\"{repo}\",\"n\":{n}}}").into_bytes(),
        digest: String::new(),
        counts: BTreeMap::new(),
    }
}
