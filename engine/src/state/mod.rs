//! Operator state: the partitioned, versioned [`StateStore`] files in the checkpoint
//! ([`store`]) and the [`KeyedState`] every stateful operator keeps in memory on top of
//! one ([`keyed`]).
//!
//! ```text
//! <ckpt>/state/<store>/_metadata                 the operator and state schema (checked at start)
//! <ckpt>/state/<store>/<partition>/<V>.delta     Arrow IPC: rows upserted / keys removed by version V
//! <ckpt>/state/<store>/<partition>/<V>.snapshot  Arrow IPC: every row of version V
//! ```

pub mod keyed;
pub mod reader;
pub mod store;
pub mod view;

pub use keyed::KeyedState;
pub use reader::{StateReader, StoreInfo};
pub use view::StateFinalizer;
pub use store::{
    check_layout, delta_of, StateStore, DEFAULT_SNAPSHOT_INTERVAL, DEFAULT_STATE_PARTITIONS, DELETED_COLUMN,
};
