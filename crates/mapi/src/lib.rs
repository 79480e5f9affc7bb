//! The MAPI object model, without I/O: what a MAPI client sees, in MAPI's words and numbers.
//!
//! # Layout
//! - [`tag`]: property tags (`PR_*`) and types (`PT_*`) with MAPI's values, names both ways.
//! - [`value`]: typed property values, `FILETIME`, rows and row sets.
//! - [`error`]: MAPI's result codes (`MAPI_E_*`, `MAPI_W_*`) and [`MapiError`].
//! - [`entry_id`]: opaque, stable entry IDs with a hex text form.
//! - [`constants`]: named flag bits and enumerations, by the property they belong to.
//! - [`restriction`]: the eleven restriction kinds, their evaluation, and a text syntax.
//! - [`table`]: `IMAPITable` — columns, restriction, sort, cursor, bookmarks, notifications.

pub mod constants;
pub mod entry_id;
pub mod error;
pub mod restriction;
pub mod table;
pub mod tag;
pub mod value;

pub use entry_id::{EntryId, MapiUid};
pub use error::{MapiCode, MapiError, MapiResult};
pub use table::{Bookmark, SortKey, SortOrder, Table, TableData, TableNotification};
pub use tag::{PropTag, PropType};
pub use value::{FileTime, Prop, PropValue, Row, RowSet};
