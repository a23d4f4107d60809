// ttrpc service stubs generated beside tonic's, over the same prost messages.
//
// For every service with unary methods this emits a module `<service>_ttrpc`
// holding:
// - `trait <Service>`: the async server side; every method has a default body
//   answering `Unimplemented`, so an implementation overrides what it serves;
// - `fn create_<service>(Arc<dyn <Service>>)`: the registration map that
//   `ttrpc::r#async::Server::register_service` takes;
// - `struct <Service>Client`: the async client.
//
// Streaming methods get no ttrpc stub: containerd serves only unary services
// over ttrpc (task, events), and ttrpc's stream framing differs from gRPC's.
// The payload is encoded with prost here, not with ttrpc's `Codec`, so the
// stubs are independent of the protobuf backend the ttrpc crate is built
// with.

use prost_build::{Method, Service, ServiceGenerator};

/// Runs tonic's generator and then ours on every service.
pub struct Both {
    tonic: Box<dyn ServiceGenerator>,
}

impl Both {
    pub fn new(tonic: Box<dyn ServiceGenerator>) -> Self {
        Self { tonic }
    }
}

impl ServiceGenerator for Both {
    fn generate(&mut self, service: Service, buf: &mut String) {
        self.tonic.generate(service.clone(), buf);
        generate_ttrpc(&service, buf);
    }

    fn finalize(&mut self, buf: &mut String) {
        self.tonic.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.tonic.finalize_package(package, buf);
    }
}

fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && !chars[i - 1].is_ascii_uppercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The type path as seen from inside the generated `<service>_ttrpc` module.
fn type_path(ty: &str) -> String {
    if ty == "()" || ty.starts_with("::") || ty.starts_with("crate::") {
        ty.to_owned()
    } else {
        format!("super::{ty}")
    }
}

fn unary(method: &Method) -> bool {
    !method.client_streaming && !method.server_streaming
}

fn generate_ttrpc(service: &Service, buf: &mut String) {
    let methods: Vec<&Method> = service.methods.iter().filter(|m| unary(m)).collect();
    if methods.is_empty() {
        return;
    }
    let full_name = if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    };
    let module = format!("{}_ttrpc", snake(&service.name));
    let trait_name = &service.name;
    let mut out = String::new();

    out.push_str(&format!(
        "/// ttrpc stubs of `{full_name}` (server trait, registration, client).\n\
         pub mod {module} {{\n\
         #![allow(unused_variables, clippy::all)]\n\
         use ::std::sync::Arc;\n\
         /// The ttrpc service name, as it appears on the wire.\n\
         pub const SERVICE: &str = \"{full_name}\";\n\n\
         /// Server side of `{full_name}` over ttrpc.\n\
         #[::async_trait::async_trait]\n\
         pub trait {trait_name}: Send + Sync + 'static {{\n"
    ));
    for m in &methods {
        out.push_str(&format!(
            "    /// `{full_name}/{proto}`.\n\
             async fn {name}(&self, ctx: &::ttrpc::r#async::TtrpcContext, req: {input}) -> ::ttrpc::Result<{output}> {{\n\
                 Err(::ttrpc::Error::RpcStatus(::ttrpc::get_status(::ttrpc::Code::UNIMPLEMENTED, \"/{full_name}/{proto} is not supported\")))\n\
             }}\n",
            proto = m.proto_name,
            name = m.name,
            input = type_path(&m.input_type),
            output = type_path(&m.output_type),
        ));
    }
    out.push_str("}\n\n");

    for m in &methods {
        let handler = format!("{}Handler", m.proto_name);
        out.push_str(&format!(
            "struct {handler} {{ service: Arc<dyn {trait_name}> }}\n\
             #[::async_trait::async_trait]\n\
             impl ::ttrpc::r#async::MethodHandler for {handler} {{\n\
                 async fn handler(&self, ctx: ::ttrpc::r#async::TtrpcContext, req: ::ttrpc::Request) -> ::ttrpc::Result<::ttrpc::Response> {{\n\
                     let input = <{input} as ::prost::Message>::decode(&req.payload[..])\n\
                         .map_err(|e| ::ttrpc::Error::RpcStatus(::ttrpc::get_status(::ttrpc::Code::INVALID_ARGUMENT, format!(\"decode {proto} request: {{e}}\"))))?;\n\
                     let res = match self.service.{name}(&ctx, input).await {{\n\
                         Ok(output) => {{\n\
                             let mut res = <::ttrpc::Response as ::ttrpc::proto::ResponseInit>::init_status(::ttrpc::get_status(::ttrpc::Code::OK, \"\"));\n\
                             ::ttrpc::proto::ResponseInit::set_payload(&mut res, ::prost::Message::encode_to_vec(&output));\n\
                             res\n\
                         }}\n\
                         Err(::ttrpc::Error::RpcStatus(status)) => <::ttrpc::Response as ::ttrpc::proto::ResponseInit>::init_status(status),\n\
                         Err(e) => <::ttrpc::Response as ::ttrpc::proto::ResponseInit>::init_status(::ttrpc::get_status(::ttrpc::Code::UNKNOWN, e.to_string())),\n\
                     }};\n\
                     Ok(res)\n\
                 }}\n\
             }}\n\n",
            proto = m.proto_name,
            name = m.name,
            input = type_path(&m.input_type),
        ));
    }

    out.push_str(&format!(
        "/// The method table of `{full_name}` for `ttrpc::r#async::Server::register_service`.\n\
         pub fn create_{snake}(service: Arc<dyn {trait_name}>) -> ::std::collections::HashMap<String, ::ttrpc::r#async::Service> {{\n\
             let mut methods: ::std::collections::HashMap<String, Box<dyn ::ttrpc::r#async::MethodHandler + Send + Sync>> = ::std::collections::HashMap::new();\n",
        snake = snake(&service.name),
    ));
    for m in &methods {
        out.push_str(&format!(
            "    methods.insert(\"{proto}\".to_string(), Box::new({proto}Handler {{ service: Arc::clone(&service) }}));\n",
            proto = m.proto_name
        ));
    }
    out.push_str(
        "    let mut services = ::std::collections::HashMap::new();\n\
             services.insert(SERVICE.to_string(), ::ttrpc::r#async::Service { methods, streams: ::std::collections::HashMap::new() });\n\
             services\n\
         }\n\n",
    );

    out.push_str(&format!(
        "/// Client of `{full_name}` over ttrpc.\n\
         #[derive(Clone)]\n\
         pub struct {trait_name}Client {{ client: ::ttrpc::r#async::Client }}\n\n\
         impl {trait_name}Client {{\n\
             /// Wraps a connected ttrpc client.\n\
             pub fn new(client: ::ttrpc::r#async::Client) -> Self {{ Self {{ client }} }}\n\n"
    ));
    for m in &methods {
        out.push_str(&format!(
            "    /// Calls `{full_name}/{proto}`.\n\
             pub async fn {name}(&self, ctx: ::ttrpc::context::Context, req: &{input}) -> ::ttrpc::Result<{output}> {{\n\
                 let mut request = <::ttrpc::Request as ::ttrpc::proto::RequestInit>::init_request(SERVICE.to_string(), \"{proto}\".to_string(), ctx.timeout_nano, ::ttrpc::context::to_pb(ctx.metadata));\n\
                 ::ttrpc::proto::RequestInit::set_payload(&mut request, ::prost::Message::encode_to_vec(req));\n\
                 let response = self.client.request(request).await?;\n\
                 <{output} as ::prost::Message>::decode(&response.payload[..])\n\
                     .map_err(|e| ::ttrpc::Error::Others(format!(\"decode {proto} response: {{e}}\")))\n\
             }}\n",
            proto = m.proto_name,
            name = m.name,
            input = type_path(&m.input_type),
            output = type_path(&m.output_type),
        ));
    }
    out.push_str("}\n}\n");
    buf.push_str(&out);
}
