//! What one component instance's `Store` holds, and the glue that hands each
//! host interface its part of it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use wasmtime::component::{Accessor, HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::variables;
use super::postgres::{PgCtx, PgView};
use super::sqlite::{SqliteCtx, SqliteView};
use super::variables::validate_name;

/// Store data of one instance (one request).
pub struct InstanceState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: NoOutboundHttp,
    pub sqlite: SqliteCtx,
    pub pg: PgCtx,
    pub variables: ComponentVariables,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl InstanceState {
    pub fn sqlite(&mut self) -> SqliteView<'_> {
        SqliteView {
            ctx: &self.sqlite,
            table: &mut self.table,
        }
    }

    pub fn pg(&mut self) -> PgView<'_> {
        PgView {
            ctx: &self.pg,
            table: &mut self.table,
        }
    }

    pub fn variables(&mut self) -> &mut ComponentVariables {
        &mut self.variables
    }
}

/// Outbound `wasi:http` requests are refused: the token API talks to no one,
/// and Spin likewise denies hosts not in `allowed_outbound_hosts`.
#[derive(Debug, Default)]
pub struct NoOutboundHttp;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for NoOutboundHttp {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The resolved `[component.<id>.variables]` of one component. Shared by
/// its instances and replaced whole when a variable changes
/// ([`super::Running::set_variable`]), so every `get` sees the current value.
#[derive(Debug, Clone)]
pub struct ComponentVariables {
    pub component: String,
    pub values: Arc<RwLock<Arc<BTreeMap<String, String>>>>,
}

impl ComponentVariables {
    pub fn new(component: &str, values: BTreeMap<String, String>) -> Self {
        Self {
            component: component.to_owned(),
            values: Arc::new(RwLock::new(Arc::new(values))),
        }
    }

    /// Puts in new values for every later `get`.
    pub fn replace(&self, values: BTreeMap<String, String>) {
        *self.values.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(values);
    }

    /// `spin:variables/variables.get`, with Spin's error cases.
    pub fn get(&self, name: &str) -> Result<String, variables::Error> {
        validate_name(name)
            .map_err(|reason| variables::Error::InvalidName(format!("{name:?}: {reason}")))?;
        let values = self
            .values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        values.get(name).cloned().ok_or_else(|| {
            variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}; declare it in [component.{}.variables]",
                self.component, self.component
            ))
        })
    }
}

/// `HasData` marker for the `spin:variables` bindings.
pub struct VariablesHost;

impl HasData for VariablesHost {
    type Data<'a> = &'a mut ComponentVariables;
}

impl variables::Host for &mut ComponentVariables {}

impl<T> variables::HostWithStore<T> for VariablesHost {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, variables::Error> {
        accessor.with(|mut a| a.get().get(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_distinguishes_invalid_and_undefined_names() {
        let vars = ComponentVariables::new(
            "token-api",
            BTreeMap::from([("cache_ttl_s".into(), "30".into())]),
        );
        assert_eq!(vars.get("cache_ttl_s").unwrap(), "30");
        assert!(matches!(
            vars.get("Cache-TTL"),
            Err(variables::Error::InvalidName(m)) if m.contains("Cache-TTL")
        ));
        assert!(matches!(
            vars.get("admin_key"),
            Err(variables::Error::Undefined(m)) if m.contains("[component.token-api.variables]")
        ));
    }

    #[test]
    fn every_clone_sees_replaced_values() {
        let vars = ComponentVariables::new(
            "token-api",
            BTreeMap::from([("cache_ttl_s".into(), "30".into())]),
        );
        let instance = vars.clone();
        vars.replace(BTreeMap::from([("cache_ttl_s".into(), "5".into())]));
        assert_eq!(instance.get("cache_ttl_s").unwrap(), "5");
    }
}
