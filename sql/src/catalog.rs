//! The catalog: every topic of a source is a table of the schema `weir.topics` (the
//! session's default, so `SELECT * FROM clicks` works and `SHOW TABLES` lists topics).
//! A topic is opened, and its value schema found or inferred, when a query first names it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::CatalogProvider;
use datafusion::catalog::{MemoryCatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use weir_log::batch::{self, RecordDecoder};

use crate::json::{infer_value_schema, ValueSchema};
use crate::source::{TopicReader, TopicSource};
use crate::table::{TopicTable, READ_BYTES_MAX_DEFAULT};
use crate::SqlError;

pub const CATALOG_NAME: &str = "weir";
pub const SCHEMA_NAME: &str = "topics";
/// The topic configs naming the format of record values (`json`, or `binary` for values
/// SQL leaves as bytes, inferring nothing) and their JSON Schema.
pub use weir_broker::{VALUE_FORMAT_CONFIG, VALUE_SCHEMA_CONFIG};
/// Records sampled per topic to infer a value schema, unless configured otherwise.
pub const INFER_SAMPLE_RECORDS_DEFAULT: usize = 1000;
/// Bytes read per partition at most while sampling.
const SAMPLE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How topics become tables.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Declared value schemas, by topic.
    pub value_schemas: BTreeMap<String, ValueSchema>,
    /// A directory of JSON Schema files `<topic>.json`, for topics not in `value_schemas`.
    pub schema_dir: Option<PathBuf>,
    /// Records sampled to infer a value schema when none is declared; 0 turns inference off.
    pub infer_sample_records: usize,
    /// Bytes a scan asks of the source per read.
    pub read_bytes_max: usize,
    /// Rows per output batch.
    pub batch_rows: usize,
    /// Bytes the session's queries may hold at once (DataFusion's memory pool: sorts and
    /// aggregates spill or fail past it, `approx_top_k` fails before allocating a summary
    /// that does not fit); `None` leaves memory unlimited, as DataFusion does. A statement
    /// can change it: `SET datafusion.runtime.memory_limit = '2G'`.
    pub memory_limit_bytes: Option<usize>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            value_schemas: BTreeMap::new(),
            schema_dir: None,
            infer_sample_records: INFER_SAMPLE_RECORDS_DEFAULT,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
            batch_rows: 8192,
            memory_limit_bytes: None,
        }
    }
}

/// A SQL session over the topics of `source`: every topic is a table, and the sketch
/// functions are registered.
///
/// ```no_run
/// # async fn trending() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use weir_sql::{new_session, RemoteSource, SqlOptions};
///
/// let broker = Arc::new(RemoteSource::connect("127.0.0.1:9292").await?);
/// let ctx = new_session(broker, SqlOptions::default()).await?;
/// let batches = ctx
///     .sql("SELECT unnest(approx_top_k(page, 10)) AS trending FROM clicks")
///     .await?
///     .collect()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub async fn new_session(
    source: Arc<dyn TopicSource>,
    options: SqlOptions,
) -> Result<SessionContext, SqlError> {
    // PostgreSQL's dialect: the generic one reads `SELECT partition, offset FROM t` as a
    // trailing comma followed by an OFFSET clause.
    let config = SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_batch_size(options.batch_rows.max(1));
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = options.memory_limit_bytes {
        // What `SET datafusion.runtime.memory_limit` builds: a greedy pool that names its
        // largest consumers when it refuses.
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
    let topics = TopicSchema::new(source, options).await?;
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(SCHEMA_NAME, Arc::new(topics))?;
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    crate::functions::register(&ctx);
    Ok(ctx)
}

/// The topics of one source as a DataFusion schema.
#[derive(Debug)]
pub struct TopicSchema {
    source: Arc<dyn TopicSource>,
    options: SqlOptions,
    names: Vec<String>,
    tables: Mutex<HashMap<String, Arc<TopicTable>>>,
    /// Views and tables created by statements (`CREATE VIEW`, `CREATE TABLE ... AS`);
    /// they live as long as the session and cannot shadow a topic.
    session_tables: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl TopicSchema {
    pub async fn new(
        source: Arc<dyn TopicSource>,
        options: SqlOptions,
    ) -> Result<TopicSchema, SqlError> {
        let names = source.topic_names().await?;
        Ok(TopicSchema {
            source,
            options,
            names,
            tables: Mutex::new(HashMap::new()),
            session_tables: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, name: &str) -> Option<Arc<TopicTable>> {
        lock(&self.tables).get(name).cloned()
    }

    /// The declared schema of `topic`, if any: from the options, else the topic's
    /// `value.schema` config, else the schema directory.
    fn declared_schema(
        &self,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<Option<ValueSchema>, SqlError> {
        if let Some(schema) = self.options.value_schemas.get(topic) {
            return Ok(Some(schema.clone()));
        }
        if let Some(text) = configs.get(VALUE_SCHEMA_CONFIG) {
            let origin = format!("of topic {topic} ({VALUE_SCHEMA_CONFIG})");
            return ValueSchema::from_json_schema(text, &origin).map(Some);
        }
        let Some(dir) = &self.options.schema_dir else {
            return Ok(None);
        };
        let path = dir.join(format!("{topic}.json"));
        if !path.is_file() {
            return Ok(None);
        }
        ValueSchema::from_file(&path).map(Some)
    }

    async fn open(&self, name: &str) -> Result<Option<Arc<TopicTable>>, SqlError> {
        let Some(reader) = self.source.open_topic(name).await? else {
            return Ok(None);
        };
        let configs = reader.configs();
        let raw_values = configs
            .get(VALUE_FORMAT_CONFIG)
            .is_some_and(|format| format != "json");
        let value_schema = match self.declared_schema(name, &configs)? {
            Some(schema) => Some(schema),
            None if self.options.infer_sample_records > 0 && !raw_values => {
                let sample =
                    sample_values(reader.as_ref(), self.options.infer_sample_records).await?;
                infer_value_schema(sample.iter().map(Vec::as_slice))
            }
            None => None,
        };
        let table = Arc::new(
            TopicTable::new(reader, value_schema).with_read_bytes_max(self.options.read_bytes_max),
        );
        let mut tables = lock(&self.tables);
        Ok(Some(Arc::clone(
            tables.entry(name.to_string()).or_insert(table),
        )))
    }
}

#[async_trait]
impl SchemaProvider for TopicSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.names.clone();
        names.extend(lock(&self.session_tables).keys().cloned());
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(table) = lock(&self.session_tables).get(name) {
            return Ok(Some(Arc::clone(table)));
        }
        if let Some(table) = self.cached(name) {
            return Ok(Some(table));
        }
        Ok(self.open(name).await?.map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) || lock(&self.session_tables).contains_key(name)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if self.names.contains(&name) {
            return Err(DataFusionError::Plan(format!(
                "{name:?} is a topic; a view or table needs another name"
            )));
        }
        Ok(lock(&self.session_tables).insert(name, table))
    }

    fn deregister_table(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if self.names.iter().any(|n| n == name) {
            return Err(DataFusionError::Plan(format!(
                "{name:?} is a topic: delete it with `weir topic delete`, not SQL"
            )));
        }
        Ok(lock(&self.session_tables).remove(name))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Up to `records_max` non-null values from the start of the partitions, shared evenly.
async fn sample_values(
    reader: &dyn TopicReader,
    records_max: usize,
) -> Result<Vec<Vec<u8>>, SqlError> {
    let snapshot = reader.snapshot().await?;
    let per_partition = records_max.div_ceil(snapshot.len().max(1));
    let mut decoder = RecordDecoder::new();
    let mut values = Vec::new();
    for partition in snapshot {
        let mut offset = partition.start_offset;
        let mut taken = 0usize;
        let mut bytes_read = 0usize;
        while offset < partition.end_offset
            && taken < per_partition
            && bytes_read < SAMPLE_BYTES_MAX
        {
            let chunk = reader
                .read(
                    partition.partition,
                    offset,
                    partition.end_offset,
                    256 * 1024,
                )
                .await?;
            if chunk.bytes.is_empty() || chunk.next_offset <= offset {
                break;
            }
            bytes_read += chunk.bytes.len();
            for item in batch::batches(&chunk.bytes) {
                let corrupt = |source| SqlError::Batch {
                    topic: reader.topic().to_string(),
                    partition: partition.partition,
                    offset,
                    source,
                };
                let (header, bytes) = item.map_err(corrupt)?;
                if header.is_control() {
                    continue;
                }
                for record in decoder.records(bytes).map_err(corrupt)? {
                    let record = record.map_err(corrupt)?;
                    if let Some(value) = record.value {
                        if taken < per_partition {
                            values.push(value.to_vec());
                            taken += 1;
                        }
                    }
                }
            }
            offset = chunk.next_offset;
        }
    }
    Ok(values)
}
