//! The typed functions of `hostel:host/redis` (`get`, `hset`, `lpush`, ...), generated from the
//! one table in `super` by [`typed_commands!`]: each sends one command built from its
//! parameters in order, on the shared connection, and reads the reply as its WIT result.

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

/// Expands, inside `impl HostConnection`, to one method per line of
/// `function(parameter: type, ...) -> reply = "COMMAND" [, nothing if parameter is empty];`.
macro_rules! typed_commands {
    ($(
        $function:ident($($param:ident: $type:ty),*) -> $reply:ty = $name:literal
            $(, nothing if $empty:ident is empty)?;
    )*) => {$(
        async fn $function(
            &mut self,
            handle: Resource<RedisHandle>,
            $($param: $type),*
        ) -> wasmtime::Result<Result<$reply, Error>> {
            $(if $empty.is_empty() {
                return Ok(Ok(Default::default()));
            })?
            let args = Args::default()$(.with($param))*;
            self.run_typed(&handle, command($name, args)).await
        }
    )*};
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
