//! The `public` schema: every topic is a table, looked up live, so a topic
//! created a moment ago is queryable and a deleted one is gone.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::common::Result;
use datafusion::datasource::TableProvider;
use karnak_storage::LogManager;

use crate::table::TopicTable;

/// Topics the broker keeps for itself are not tables.
fn visible(name: &str) -> bool {
    !name.starts_with("__karnak")
}

pub struct TopicSchema {
    logs: Arc<LogManager>,
}

impl std::fmt::Debug for TopicSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicSchema").finish_non_exhaustive()
    }
}

impl TopicSchema {
    pub fn new(logs: Arc<LogManager>) -> Self {
        TopicSchema { logs }
    }
}

#[async_trait]
impl SchemaProvider for TopicSchema {
    fn table_names(&self) -> Vec<String> {
        self.logs
            .topics()
            .into_iter()
            .map(|t| t.meta.name.clone())
            .filter(|n| visible(n))
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !visible(name) {
            return Ok(None);
        }
        Ok(self
            .logs
            .topic(name)
            .map(|t| Arc::new(TopicTable::new(t)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        visible(name) && self.logs.topic(name).is_some()
    }
}
