//! The phases a request passes before it goes upstream, each one concern that may end it with
//! an answer of Porter's own ([`answer`]): well-formed heads ([`headers`]), the host and site
//! ([`route`], HTTP-01 answers in [`challenge`]), the site's address lists, redirects, basic
//! auth and WordPress login limit ([`access`], [`redirect`], [`basic_auth`], [`wp_login`]),
//! the WAF ([`waf`]), and admission ([`admission`]: rates in [`rate`], slots in [`gate`]).
//! It may use the upstream side's bodies, never the connection side.

pub(super) mod access;
pub(super) mod admission;
pub(super) mod answer;
pub(super) mod basic_auth;
pub(super) mod challenge;
pub(super) mod gate;
pub(super) mod headers;
pub(super) mod rate;
pub(super) mod redirect;
pub(super) mod route;
pub(super) mod waf;
pub(super) mod wp_login;
