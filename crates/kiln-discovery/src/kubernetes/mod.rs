//! `kubernetes_sd_configs`: not run yet (the next commit adds it); the config loads and
//! the manager logs that no targets come from it.

use kiln_config::KubernetesSdConfig;

use crate::manager::Publisher;

pub struct KubernetesDiscovery;

impl KubernetesDiscovery {
    pub fn new(_config: KubernetesSdConfig) -> Result<KubernetesDiscovery, String> {
        Err("Kubernetes discovery is not built into this Kiln version yet".into())
    }

    pub async fn run(self, _publisher: Publisher) {}
}
