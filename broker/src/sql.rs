//! The SQL gateway's INSERTs, produced through the Kafka produce path: the
//! same batch validation, timestamp policy, metrics and acks=all
//! durability a Kafka producer gets.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use karnak_sql::{ProduceError, Producer};

use crate::broker::Broker;
use crate::handlers::{now_ms, produce};

pub struct BrokerProducer(pub Arc<Broker>);

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const INVALID_TOPIC_EXCEPTION: i16 = ResponseError::InvalidTopicException.code();
const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();

#[async_trait::async_trait]
impl Producer for BrokerProducer {
    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<i64, ProduceError> {
        if crate::topics::is_internal(topic) {
            return Err(ProduceError {
                code: INVALID_TOPIC_EXCEPTION,
                message: format!("{topic} is written by the broker only"),
            });
        }
        let log = self
            .0
            .logs
            .log(topic, partition)
            .ok_or_else(|| ProduceError {
                code: UNKNOWN_TOPIC_OR_PARTITION,
                message: format!("{topic}-{partition} does not exist"),
            })?;
        let fsync = self.0.config.flush_on_acks_all;
        // Appends and fsync are file I/O: off the reactor.
        tokio::task::spawn_blocking(move || {
            let (log, info) = produce::append(&log, records, now_ms(), &|_| Ok(())).map_err(
                |(code, message)| ProduceError {
                    code,
                    message: message.unwrap_or_else(|| "append failed".into()),
                },
            )?;
            if fsync {
                log.flush_up_to(info.last_offset + 1)
                    .map_err(|e| ProduceError {
                        code: KAFKA_STORAGE_ERROR,
                        message: format!("fsync failed: {e}"),
                    })?;
            }
            Ok(info.base_offset)
        })
        .await
        .map_err(|e| ProduceError {
            code: ResponseError::UnknownServerError.code(),
            message: format!("produce task: {e}"),
        })?
    }
}
