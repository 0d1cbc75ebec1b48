//! Which paths count as routes. The runner serves one component for every
//! path and knows none of its route templates, so a path the component
//! answered (anything but 404) is taken as a route, up to [`MAX_ROUTES`] of
//! them. Paths come from clients: labelling each one would let a scanner
//! create unbounded metric series and span names; a component has a handful
//! of routes. Metrics label by route and spans are named by it.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use http::StatusCode;

/// How many distinct paths are taken as routes.
pub const MAX_ROUTES: usize = 32;

/// What a request's path is, route-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of the first [`MAX_ROUTES`] paths the component answered.
    Known(Arc<str>),
    /// The component answered 404: no route matched.
    Unmatched,
    /// A path beyond [`MAX_ROUTES`].
    Other,
}

/// The routes seen so far. Shared, so that a request on a known route
/// clones a pointer rather than allocating.
#[derive(Debug, Default)]
pub struct Routes {
    known: RwLock<HashSet<Arc<str>>>,
}

impl Routes {
    /// The route of a request to `path` that the component answered `status`.
    pub fn classify(&self, path: &str, status: StatusCode) -> Route {
        if status == StatusCode::NOT_FOUND {
            return Route::Unmatched;
        }
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = known.get(path) {
            return Route::Known(Arc::clone(route));
        }
        drop(known);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = known.get(path) {
            Route::Known(Arc::clone(route))
        } else if known.len() < MAX_ROUTES {
            let route: Arc<str> = path.into();
            known.insert(Arc::clone(&route));
            Route::Known(route)
        } else {
            Route::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_and_404s_are_unmatched() {
        let routes = Routes::default();
        assert_eq!(
            routes.classify("/nope", StatusCode::NOT_FOUND),
            Route::Unmatched
        );
        for i in 0..MAX_ROUTES {
            let path = format!("/r{i}");
            assert_eq!(
                routes.classify(&path, StatusCode::OK),
                Route::Known(path.into())
            );
        }
        assert_eq!(routes.classify("/one-more", StatusCode::OK), Route::Other);
        assert_eq!(
            routes.classify("/r0", StatusCode::BAD_REQUEST),
            Route::Known("/r0".into())
        );
    }
}
