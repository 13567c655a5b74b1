//! The agent's view of every component type: the closed lists of the
//! component crates, plus the in-process test components when the `testing`
//! feature is on. Everything the config loader and the topology need to know
//! about a type goes through the enums here.

use magpie_core::config::{ConfigError, Node};
use magpie_core::queue::WhenFull;
use magpie_core::retry::RetryConfig;
use magpie_core::{
    ComponentError, ComponentId, ComponentKind, Connector, Exporter, Processor, Receiver, Signals, TypeInfo,
};
use magpie_exporters::ExporterConfig;
use magpie_processors::{ConnectorConfig, ProcessorConfig};
use magpie_receivers::ReceiverConfig;

#[cfg(feature = "testing")]
use magpie_core::testing;

/// A parsed config and the paths of its secret fields.
type Parsed<T> = Result<Option<(T, Vec<String>)>, ConfigError>;

#[cfg(feature = "testing")]
const TEST_RECEIVERS: &[TypeInfo] = &[TypeInfo {
    name: "test_source",
    signals: Signals::ALL,
    routes: &[],
    about: "test only: forwards batches sent from the test through a named handle",
}];

#[cfg(feature = "testing")]
const TEST_EXPORTERS: &[TypeInfo] = &[TypeInfo {
    name: "capture",
    signals: Signals::ALL,
    routes: &[],
    about: "test only: records batches for the test to read; can stall or fail on demand",
}];

/// Every component type of `kind`.
pub fn types(kind: ComponentKind) -> Vec<TypeInfo> {
    let mut out: Vec<TypeInfo> = match kind {
        ComponentKind::Receiver => magpie_receivers::TYPES.to_vec(),
        ComponentKind::Processor => magpie_processors::TYPES.to_vec(),
        ComponentKind::Exporter => magpie_exporters::TYPES.to_vec(),
        ComponentKind::Connector => magpie_processors::CONNECTOR_TYPES.to_vec(),
    };
    #[cfg(feature = "testing")]
    match kind {
        ComponentKind::Receiver => out.extend_from_slice(TEST_RECEIVERS),
        ComponentKind::Exporter => out.extend_from_slice(TEST_EXPORTERS),
        _ => {}
    }
    out.sort_by_key(|t| t.name);
    out
}

/// The type info of `name` of `kind`.
pub fn type_info(kind: ComponentKind, name: &str) -> Option<TypeInfo> {
    types(kind).into_iter().find(|t| t.name == name)
}

/// A receiver's config. Configs are built once per load, so variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ReceiverSpec {
    Builtin(ReceiverConfig),
    #[cfg(feature = "testing")]
    TestSource(testing::TestSourceConfig),
}

impl ReceiverSpec {
    pub fn parse(type_name: &str, node: &Node, path: &str) -> Parsed<Self> {
        #[cfg(feature = "testing")]
        if type_name == "test_source" {
            return magpie_core::config::from_node(node, path)
                .map(|(c, s)| Some((ReceiverSpec::TestSource(c), s)));
        }
        Ok(ReceiverConfig::parse(type_name, node, path)?.map(|(c, s)| (ReceiverSpec::Builtin(c), s)))
    }

    pub fn signals(&self) -> Signals {
        match self {
            ReceiverSpec::Builtin(c) => c.signals(),
            #[cfg(feature = "testing")]
            ReceiverSpec::TestSource(_) => Signals::ALL,
        }
    }

    pub fn problems(&self) -> Vec<String> {
        match self {
            ReceiverSpec::Builtin(c) => c.problems(),
            #[cfg(feature = "testing")]
            ReceiverSpec::TestSource(_) => Vec::new(),
        }
    }

    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        match self {
            ReceiverSpec::Builtin(c) => c.listen_addresses(),
            #[cfg(feature = "testing")]
            ReceiverSpec::TestSource(_) => Vec::new(),
        }
    }

    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Receiver>, ComponentError> {
        match self {
            ReceiverSpec::Builtin(c) => c.build(id),
            #[cfg(feature = "testing")]
            ReceiverSpec::TestSource(c) => Ok(Box::new(testing::TestSource::new(c.clone()))),
        }
    }
}

/// An exporter's own config (queue and retry are parsed by the loader).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ExporterSpec {
    Builtin(ExporterConfig),
    #[cfg(feature = "testing")]
    Capture(testing::CaptureConfig),
}

impl ExporterSpec {
    pub fn parse(type_name: &str, node: &Node, path: &str) -> Parsed<Self> {
        #[cfg(feature = "testing")]
        if type_name == "capture" {
            return magpie_core::config::from_node(node, path)
                .map(|(c, s)| Some((ExporterSpec::Capture(c), s)));
        }
        Ok(ExporterConfig::parse(type_name, node, path)?.map(|(c, s)| (ExporterSpec::Builtin(c), s)))
    }

    pub fn problems(&self) -> Vec<String> {
        match self {
            ExporterSpec::Builtin(c) => c.problems(),
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(_) => Vec::new(),
        }
    }

    pub fn listen_addresses(&self) -> Vec<(String, String)> {
        match self {
            ExporterSpec::Builtin(c) => c.listen_addresses(),
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(_) => Vec::new(),
        }
    }

    pub fn default_when_full(&self) -> WhenFull {
        match self {
            ExporterSpec::Builtin(c) => c.default_when_full(),
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(_) => WhenFull::Block,
        }
    }

    /// `retry_on_failure` when the config does not say.
    pub fn default_retry(&self) -> RetryConfig {
        match self {
            ExporterSpec::Builtin(c) => c.default_retry(),
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(_) => RetryConfig::default(),
        }
    }

    /// Runs the exporter's schema migrations (`magpie migrate`); `None` when it has none.
    pub async fn migrate(&self) -> Option<Result<String, ComponentError>> {
        match self {
            ExporterSpec::Builtin(c) => c.migrate().await,
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(_) => None,
        }
    }

    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Exporter>, ComponentError> {
        match self {
            ExporterSpec::Builtin(c) => c.build(id),
            #[cfg(feature = "testing")]
            ExporterSpec::Capture(c) => Ok(Box::new(testing::CaptureExporter::new(c.clone()))),
        }
    }
}

/// A processor's config.
pub fn parse_processor(type_name: &str, node: &Node, path: &str) -> Parsed<ProcessorConfig> {
    ProcessorConfig::parse(type_name, node, path)
}

/// A connector's config.
pub fn parse_connector(type_name: &str, node: &Node, path: &str) -> Parsed<ConnectorConfig> {
    ConnectorConfig::parse(type_name, node, path)
}

/// Builds a processor instance for one pipeline.
pub fn build_processor(
    config: &ProcessorConfig,
    id: &ComponentId,
) -> Result<Box<dyn Processor>, ComponentError> {
    config.build(id)
}

/// Builds a connector instance.
pub fn build_connector(
    config: &ConnectorConfig,
    id: &ComponentId,
) -> Result<Box<dyn Connector>, ComponentError> {
    config.build(id)
}
