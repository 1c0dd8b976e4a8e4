//! The calls of `hostel:host/redis`, both WIT versions, generated from the tables in `super`
//! by [`connection_calls!`]; the typed functions (`get`, `hset`,
//! `lpush`, ...) each send one command built from their parameters in order.

/// A command's arguments, built from typed values in order.
#[derive(Default)]
pub struct Args(Vec<Vec<u8>>);

impl Args {
    pub fn with(mut self, value: impl Arg) -> Args {
        value.push_to(&mut self.0);
        self
    }

    pub fn into_inner(self) -> Vec<Vec<u8>> {
        self.0
    }
}

/// A typed value as Redis arguments: numbers in decimal, lists one argument per item.
pub trait Arg {
    fn push_to(self, args: &mut Vec<Vec<u8>>);
}

impl Arg for String {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.push(self.into_bytes());
    }
}

impl Arg for &str {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.push(self.as_bytes().to_vec());
    }
}

impl Arg for Vec<u8> {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.push(self);
    }
}

impl Arg for i64 {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.push(self.to_string().into_bytes());
    }
}

impl Arg for u64 {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.push(self.to_string().into_bytes());
    }
}

impl Arg for Vec<String> {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.extend(self.into_iter().map(String::into_bytes));
    }
}

impl Arg for Vec<Vec<u8>> {
    fn push_to(self, args: &mut Vec<Vec<u8>>) {
        args.extend(self);
    }
}

/// The `connection` calls of both WIT editions, from one table: the typed commands become
/// methods of `RedisHandle` (one command built from the parameters in order, its reply read as
/// the WIT result), and every call, typed or `others` (written out on `RedisHandle`), is
/// forwarded to that method from both host traits by [`resource_calls!`].
macro_rules! connection_calls {
    (
        typed {$(
            $function:ident($($param:ident: $type:ty),*) -> $reply:ty = $name:literal
                $(, nothing if $empty:ident is empty)?;
        )*}
        others {$(
            $other:ident($($other_param:ident: $other_type:ty),*) -> $other_reply:ty;
        )*}
    ) => {
        impl RedisHandle {$(
            async fn $function(&self, $($param: $type),*) -> Result<$reply, Error> {
                $(if $empty.is_empty() {
                    return Ok(Default::default());
                })?
                let args = Args::default()$(.with($param))*;
                self.run_typed(command($name, args)).await
            }
        )*}

        resource_calls! {
            Resource<RedisHandle> => handle, handle_done;
            errors Error;
            v0_1 RedisView: wit::HostConnection {
                async fn open(
                    &mut self,
                    name: String,
                ) -> wasmtime::Result<Result<Resource<RedisHandle>, Error>> {
                    RedisView::open(self, name)
                }

                async fn transaction(
                    &mut self,
                    handle: Resource<RedisHandle>,
                ) -> wasmtime::Result<Result<Resource<RedisLease>, Error>> {
                    let handle = self.handle(&handle)?;
                    let lease = pool_call(module_path!(), "transaction", handle.transaction()).await;
                    self.push_lease(lease)
                }
            }
            v0_2 RedisView: wit_async::HostConnection {
                fn open(
                    &mut self,
                    name: String,
                ) -> wasmtime::Result<Result<Resource<RedisHandle>, Error>> {
                    RedisView::open(self, name)
                }
            }
            with store ViewData: wit_async::HostConnectionWithStore {
                async fn transaction(
                    store: &::wasmtime::component::Accessor<T, Self>,
                    handle: Resource<RedisHandle>,
                ) -> wasmtime::Result<Result<Resource<RedisLease>, Error>> {
                    let handle = store.with(|mut access| access.get().handle(&handle))?;
                    let lease = pool_call(module_path!(), "transaction", handle.transaction()).await;
                    store.with(|mut access| access.get().push_lease(lease))
                }
            }
            calls {
                $($function($($param: $type),*) -> $reply;)*
                $($other($($other_param: $other_type),*) -> $other_reply;)*
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_keep_their_order_and_bytes() {
        let args = Args::default()
            .with("k".to_string())
            .with(vec![0u8, 255])
            .with(-3i64)
            .with(vec!["a".to_string(), "b".to_string()])
            .with(vec![vec![1u8], vec![]])
            .into_inner();
        let expected: Vec<Vec<u8>> = vec![
            b"k".to_vec(),
            vec![0, 255],
            b"-3".to_vec(),
            b"a".to_vec(),
            b"b".to_vec(),
            vec![1],
            vec![],
        ];
        assert_eq!(args, expected);
    }
}
