//! The routes of the emulated API and Twilio's error bodies: authentication, the
//! concurrency limit, and one handler per endpoint.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{config::*, faults::*, record::*, responses::*, store::*};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/Sims", get(list_sims).post(create_sim))
        .route("/v1/Sims/{sid}", get(fetch_sim).post(update_sim))
        .route("/v1/Fleets", get(list_fleets))
        .route("/v1/Fleets/{sid}", get(fetch_fleet))
        .route(STATS_PATH, get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            admit_request,
        ))
        .with_state(shared)
}

/// What every request goes through, in the order Twilio is assumed to apply it: the way
/// there, counting, the concurrency limit, auth, latency while in flight, then the way back.
pub(super) async fn admit_request(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == STATS_PATH {
        return next.run(request).await;
    }
    let half_round_trip = shared.config.network_delay / 2;
    pause(half_round_trip).await;
    shared.start_clock();
    // A refused request is never processed, so it holds no slot: it does not make the next
    // request (this client's or the other app's) meet a 429 too. Its count is taken at the
    // moment it is refused: read later, requests that ended meanwhile would make the
    // account look emptier than it was when it refused.
    let (slot, count_at_admission) = {
        let mut store = shared.store();
        store.stats.requests += 1;
        let slot = shared.take_slot(&mut store);
        let counted_refused = usize::from(slot.is_none() && shared.config.header_counts_refused);
        (slot, store.in_flight + counted_refused)
    };
    // Held until the answer is ready, so the request counts as in flight meanwhile.
    let over_limit = slot.is_none();
    let mut response = if over_limit {
        pause(shared.config.limit_latency).await;
        let mut response = too_many_requests();
        if let Some(seconds) = shared.config.limit_retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    } else if request.uri().path().starts_with("/v1") && !shared.is_authorized(request.headers()) {
        let mut response = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        response
    } else {
        tokio::time::sleep(shared.jittered(shared.config.latency)).await;
        next.run(request).await
    };
    {
        let mut store = shared.store();
        if !over_limit && shared.limit_now().is_some_and(|max| store.in_flight >= max) {
            store.stats.answers_at_limit += 1;
        }
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS => store.stats.throttled += 1,
            StatusCode::UNAUTHORIZED => store.stats.unauthorized += 1,
            _ => {}
        }
        let carries_header = match shared.config.concurrency_header {
            HeaderConvention::EveryAnswer => true,
            HeaderConvention::On429Only => response.status() == StatusCode::TOO_MANY_REQUESTS,
            HeaderConvention::Never => false,
        };
        // An admitted answer's count is the account's now, this request included, or as it
        // was admitted (see `EmulatorConfig::header_counted_at_admission`).
        let count =
            carries_header.then_some(if over_limit || shared.config.header_counted_at_admission {
                count_at_admission
            } else {
                store.in_flight
            });
        if let Some(count) = count {
            response
                .headers_mut()
                .insert(CONCURRENT_REQUESTS_HEADER, HeaderValue::from(count));
        }
    }
    // The slot is free from here; the answer is still on its way to the client.
    drop(slot);
    pause(half_round_trip).await;
    response
}

/// Half the network's round trip (see [`EmulatorConfig::network_delay`]), or a 429's own
/// time ([`EmulatorConfig::limit_latency`]). Zero is no wait at all: a zero sleep still
/// waits for the timer's next tick.
async fn pause(duration: std::time::Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

pub(super) async fn create_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<CreateParams>, FormRejection>,
) -> Response {
    shared.store().stats.create_requests += 1;
    // An unreadable body is answered like a missing parameter, as Twilio does.
    let params = form.map(|Form(params)| params).unwrap_or_default();
    let fault = shared.next_fault(params.iccid.as_deref());
    if fault == Some(Fault::EchoSecrets) {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        return echo_secrets(authorization, params.registration_code.as_deref());
    }
    around_commit(fault, || {
        shared.register(params, &base_url(&shared, &headers))
    })
    .await
}

pub(super) async fn update_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    form: Result<Form<UpdateParams>, FormRejection>,
) -> Response {
    let iccid = {
        let mut store = shared.store();
        store.stats.update_requests += 1;
        store
            .sims
            .iter()
            .find(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid.as_str()))
            .map(|sim| sim.iccid.clone())
    };
    shared.updates_seen.send_modify(|seen| *seen += 1);
    let params = form.map(|Form(params)| params).unwrap_or_default();
    let fault = iccid.and_then(|iccid| shared.next_update_fault(&iccid));
    let base = base_url(&shared, &headers);
    match fault {
        Some(Fault::SuccessUnapplied) => shared.unchanged(&sid, &base),
        Some(fault @ (Fault::ScheduledThenReverts | Fault::FleetWithScheduledChange)) => {
            shared.update_scheduling(&sid, params, &base, &fault)
        }
        fault => around_commit(fault, || shared.update(&sid, params, &base)).await,
    }
}

/// Runs `commit` (a registration or an update) with the injected `fault` around it: held
/// then refused, refused before anything changes, or committed and then answered late,
/// altered, cut short or not at all.
async fn around_commit(fault: Option<Fault>, commit: impl FnOnce() -> Response) -> Response {
    if let Some(Fault::StallBeforeCommit(stall)) = fault {
        tokio::time::sleep(stall).await;
        return Fault::Unavailable { retry_after: None }
            .response_before_commit()
            .unwrap_or_else(lost_response);
    }
    if let Some(response) = fault.as_ref().and_then(Fault::response_before_commit) {
        return response;
    }
    let response = commit();
    match fault {
        Some(Fault::DropAfterCommit) => lost_response(),
        Some(Fault::SlowAfterCommit(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        Some(Fault::AlteredAnswer { fields }) => alter_answer(response, &fields).await,
        Some(Fault::CutShortAfterCommit) => cut_short(response).await,
        _ => response,
    }
}

#[derive(Deserialize)]
pub(super) struct PageParams {
    #[serde(rename = "PageSize")]
    pub(super) page_size: Option<String>,
    #[serde(rename = "Page")]
    pub(super) page: Option<String>,
}

pub(super) async fn list_fleets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<PageParams>,
) -> Response {
    let (page, page_size) = match params.resolve() {
        Ok(paging) => paging,
        Err(parameter) => return invalid_parameter(parameter),
    };
    let base = base_url(&shared, &headers);
    let store = shared.store();
    let page_url = |page: usize| format!("{base}/v1/Fleets?PageSize={page_size}&Page={page}");
    list_page(
        "fleets",
        &store.fleets,
        (page, page_size),
        |fleet| fleet.to_json(&base, &shared.config.account_sid),
        page_url,
        false,
    )
}

pub(super) async fn fetch_fleet(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let fault = shared
        .store()
        .injected_fleets
        .get_mut(&sid)
        .and_then(std::collections::VecDeque::pop_front);
    let response = fleet_answer(&shared, &headers, &sid);
    around_commit(fault, || response).await
}

/// `GET /v1/Fleets/{Sid}` without faults.
fn fleet_answer(shared: &Shared, headers: &HeaderMap, sid: &str) -> Response {
    let sid = sid.to_string();
    let mut store = shared.store();
    let known = store
        .fleets
        .iter()
        .any(|fleet| fleet.sid == sid || fleet.unique_name == sid);
    // A rehearsal names the real account's Fleets: one asked for by unique name is made up.
    if !known && shared.config.make_up_fleets && !sid.starts_with("HF") {
        store.fleets.push(FleetRecord {
            sid: fleet_sid_for(&sid),
            unique_name: sid.clone(),
            date_created: std::time::SystemTime::now(),
        });
        store.made_up_fleets.push(sid.clone());
    }
    match store
        .fleets
        .iter()
        .find(|fleet| fleet.sid == sid || fleet.unique_name == sid)
    {
        Some(fleet) => Json(fleet.to_json(&base_url(shared, headers), &shared.config.account_sid))
            .into_response(),
        None => not_found_error(&format!("/v1/Fleets/{sid}")),
    }
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(rename = "Iccid")]
    pub(super) iccid: Option<String>,
    #[serde(rename = "Status")]
    pub(super) status: Option<String>,
    #[serde(rename = "Fleet")]
    pub(super) fleet: Option<String>,
    #[serde(flatten)]
    pub(super) paging: PageParams,
}

pub(super) async fn list_sims(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    let mut store = shared.store();
    if params.iccid.is_some() {
        store.stats.lookup_requests += 1;
    } else {
        store.stats.list_requests += 1;
    }
    let now = Instant::now();
    store.sims.iter_mut().for_each(|sim| sim.settle(now));
    let (page, page_size) = match params.paging.resolve() {
        Ok(paging) => paging,
        Err(parameter) => return invalid_parameter(parameter),
    };
    let wanted = |filter: &Option<String>, value: Option<&str>| {
        filter.is_none() || filter.as_deref() == value
    };
    let base = base_url(&shared, &headers);
    // `Fleet` is a SID or a unique name, as in UpdateSim. A rehearsal's made-up Fleets are
    // not kept in its journal, so one named again in a later run (an export of the
    // rehearsal) is the same made-up Fleet: its SID derives from its name.
    let fleet_sid = params.fleet.as_ref().map(|wanted| {
        match store
            .fleets
            .iter()
            .find(|fleet| &fleet.unique_name == wanted)
        {
            Some(fleet) => fleet.sid.clone(),
            None if shared.config.make_up_fleets && !wanted.starts_with("HF") => {
                fleet_sid_for(wanted)
            }
            None => wanted.clone(),
        }
    });
    let selected: Vec<&SimRecord> = store
        .sims
        .iter()
        .filter(|sim| {
            wanted(&params.iccid, Some(&sim.iccid))
                && wanted(&params.status, Some(&sim.status))
                && wanted(&fleet_sid, sim.fleet_sid.as_deref())
        })
        .collect();
    let filters: String = [
        ("Status", &params.status),
        ("Fleet", &params.fleet),
        ("Iccid", &params.iccid),
    ]
    .iter()
    .filter_map(|(name, value)| Some(format!("{name}={}&", percent_encode(value.as_deref()?))))
    .collect();
    let page_url =
        |page: usize| format!("{base}/v1/Sims?{filters}PageSize={page_size}&Page={page}");
    let Some(fault) = &shared.config.paging_fault else {
        return list_page(
            "sims",
            &selected,
            (page, page_size),
            |sim| sim.to_json(&base),
            page_url,
            shared.config.paging_cycle,
        );
    };
    let shown = |page: usize| -> Vec<serde_json::Value> {
        selected
            .iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .map(|sim| sim.to_json(&base))
            .collect()
    };
    let has_next = page.saturating_add(1).saturating_mul(page_size) < selected.len();
    let mut sims = shown(page);
    let mut next_page_url = has_next.then(|| page_url(page + 1));
    let mut padding = 0;
    match fault {
        PagingFault::EndlessRepeat => {
            sims = shown(0);
            // A token never given before: this answer's place among the list requests.
            let token = store.stats.list_requests;
            next_page_url = Some(format!("{}&PageToken=PT{token}", page_url(page + 1)));
        }
        PagingFault::RepeatPageBefore if page > 0 => {
            sims = shown(page - 1).into_iter().chain(sims).collect();
        }
        PagingFault::RepeatPageBefore => {}
        PagingFault::NextPageUrl(next) if next.starts_with('/') => {
            next_page_url = Some(format!("{base}{next}"));
        }
        PagingFault::NextPageUrl(next) => next_page_url = Some(next.clone()),
        PagingFault::ListedAccount(account) => {
            for sim in &mut sims {
                sim["account_sid"] = json!(account);
            }
        }
        PagingFault::PaddedBody(bytes) => padding = *bytes,
    }
    let body = json!({
        "sims": sims,
        "meta": {
            "first_page_url": page_url(0),
            "key": "sims",
            "next_page_url": next_page_url,
            "page": page,
            "page_size": page_size,
            "previous_page_url": (page > 0).then(|| page_url(page - 1)),
            "url": page_url(page),
        },
    });
    if padding == 0 {
        return Json(body).into_response();
    }
    drop(store);
    let counter = Arc::clone(&shared);
    padded_body(body.to_string().into_bytes(), padding, move |bytes| {
        counter.store().stats.padding_sent += bytes;
    })
}

impl PageParams {
    /// `(Page, PageSize)` as Twilio reads them: a size above the maximum is capped, a value
    /// that is not a number is refused: the error names the parameter.
    pub(super) fn resolve(&self) -> Result<(usize, usize), &'static str> {
        let number =
            |value: &Option<String>, name, default| match value.as_deref().map(str::parse::<usize>)
            {
                None => Ok(default),
                Some(Ok(n)) => Ok(n),
                Some(Err(_)) => Err(name),
            };
        let page_size = number(&self.page_size, "PageSize", DEFAULT_PAGE_SIZE)?;
        Ok((
            number(&self.page, "Page", 0)?,
            page_size.clamp(1, MAX_PAGE_SIZE),
        ))
    }
}

/// One page of a list answer under `key`, with the `meta` block every Twilio list has.
/// With `cycle`, a last page after the first names the first page as its next (a faulty
/// server's paging, for clients that must not follow it for ever).
pub(super) fn list_page<T>(
    key: &str,
    all: &[T],
    (page, page_size): (usize, usize),
    to_json: impl Fn(&T) -> serde_json::Value,
    page_url: impl Fn(usize) -> String,
    cycle: bool,
) -> Response {
    let items: Vec<serde_json::Value> = all
        .iter()
        .skip(page.saturating_mul(page_size))
        .take(page_size)
        .map(to_json)
        .collect();
    let has_next = page.saturating_add(1).saturating_mul(page_size) < all.len();
    Json(json!({
        key: items,
        "meta": {
            "first_page_url": page_url(0),
            "key": key,
            "next_page_url": match (has_next, cycle && page > 0) {
                (true, _) => Some(page_url(page + 1)),
                (false, true) => Some(page_url(0)),
                (false, false) => None,
            },
            "page": page,
            "page_size": page_size,
            "previous_page_url": (page > 0).then(|| page_url(page - 1)),
            "url": page_url(page),
        },
    }))
    .into_response()
}

pub(super) async fn fetch_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let (response, fault) = {
        let mut store = shared.store();
        store.stats.lookup_requests += 1;
        // Twilio lets a SIM be addressed by its unique name in place of its SID.
        let found = store
            .sims
            .iter_mut()
            .find(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid.as_str()))
            .map(|sim| {
                sim.settle(Instant::now());
                sim.clone()
            });
        let fault = found.as_ref().and_then(|sim| {
            store
                .injected_fetches
                .get_mut(&sim.iccid)
                .and_then(std::collections::VecDeque::pop_front)
        });
        let response = match found {
            Some(sim) => Json(sim.to_json(&base_url(&shared, &headers))).into_response(),
            None => not_found_error(&format!("/v1/Sims/{sid}")),
        };
        (response, fault)
    };
    around_commit(fault, || response).await
}

pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.store().stats.clone())
}

pub(super) async fn not_found(uri: Uri) -> Response {
    not_found_error(uri.path())
}

pub(super) async fn method_not_allowed() -> Response {
    twilio_error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed")
}

/// Resource URLs point back at the host the client used, so they work through any address.
pub(super) fn base_url(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_else(|| shared.fallback_base_url.clone())
}
