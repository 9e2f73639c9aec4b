"""The Beam jobs that write a store (extract-features, pseudo-labels) and what they share to run.

Importing Apache Beam without its Google Cloud extras logs "apitools not found, and bigquery client libraries are
not available" (apache_beam/io/gcp/internal/clients/bigquery). That warning concerns Dataflow and BigQuery clients a
local or Flink run never uses, and where those clients are installed it is not logged at all: it is dropped here,
before any module of this package imports Beam.
"""
import logging


class _WithoutMissingGcpClientsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found, and bigquery client libraries")


logging.getLogger().addFilter(_WithoutMissingGcpClientsWarning())
