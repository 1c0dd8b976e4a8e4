//! The requests and replies of outbound HTTP, the same in both SDK editions (each names its
//! own WASI `Method`).

use super::Method;

/// A request to send.
pub struct Fetch {
    pub(super) method: Method,
    pub(super) url: String,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Option<Vec<u8>>,
}

impl Fetch {
    pub fn get(url: impl Into<String>) -> Fetch {
        Fetch::new(Method::Get, url)
    }

    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Fetch {
        let mut fetch = Fetch::new(Method::Post, url);
        fetch.body = Some(body.into());
        fetch
    }

    pub fn new(method: Method, url: impl Into<String>) -> Fetch {
        Fetch {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Fetch {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
