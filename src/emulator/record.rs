//! The records the emulated account is made of: a SIM and a Fleet as the store keeps them,
//! and how each is written as Twilio's JSON. Its own module because the store and the state
//! journal both build and read SIMs, and neither should import the other for it.

use std::time::{Instant, SystemTime};

use serde_json::json;

use super::config::fnv1a;

/// A SIM registered on the emulated account.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRecord {
    pub sid: String,
    pub iccid: String,
    pub status: String,
    pub fleet_sid: Option<String>,
    pub unique_name: Option<String>,
    pub account_sid: String,
    pub date_created: SystemTime,
    pub date_updated: SystemTime,
    /// While `status` is `scheduled`: the status it becomes, and when.
    pub scheduled: Option<(String, Instant)>,
    /// While `status` is `scheduled`: a Fleet that shows only once the change is done
    /// (`Some(None)`: no Fleet), as a server that assigns it with the status change would.
    pub scheduled_fleet: Option<Option<String>>,
}

impl SimRecord {
    /// Applies a scheduled status change whose time has come. Called before every read, so
    /// no background task is needed and a zero delay is visible at the next request.
    pub(super) fn settle(&mut self, now: Instant) {
        if let Some((status, due)) = self.scheduled.take() {
            if now >= due {
                self.status = status;
                if let Some(fleet) = self.scheduled_fleet.take() {
                    self.fleet_sid = fleet;
                }
                self.date_updated = SystemTime::now();
            } else {
                self.scheduled = Some((status, due));
            }
        }
    }

    pub(super) fn to_json(&self, base_url: &str) -> serde_json::Value {
        let url = format!("{base_url}/v1/Sims/{}", self.sid);
        json!({
            "sid": self.sid,
            "unique_name": self.unique_name,
            "account_sid": self.account_sid,
            "iccid": self.iccid,
            "status": self.status,
            "fleet_sid": self.fleet_sid,
            "date_created": humantime::format_rfc3339_seconds(self.date_created).to_string(),
            "date_updated": humantime::format_rfc3339_seconds(self.date_updated).to_string(),
            "links": {
                "billing_periods": format!("{url}/BillingPeriods"),
                "sim_ip_addresses": format!("{url}/IpAddresses"),
            },
            "url": url,
        })
    }
}

/// A Fleet on the emulated account.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FleetRecord {
    pub sid: String,
    pub unique_name: String,
    pub date_created: SystemTime,
}

impl FleetRecord {
    /// `components.schemas["supersim.v1.fleet"]`, with Twilio's documented defaults.
    pub(super) fn to_json(&self, base_url: &str, account_sid: &str) -> serde_json::Value {
        let date = humantime::format_rfc3339_seconds(self.date_created).to_string();
        let profile = format!(
            "HA{:016x}{:016x}",
            fnv1a(&[b"nap/", self.unique_name.as_bytes()]),
            fnv1a(&[b"nap-low/", self.unique_name.as_bytes()])
        );
        json!({
            "account_sid": account_sid,
            "sid": self.sid,
            "unique_name": self.unique_name,
            "date_created": date,
            "date_updated": date,
            "url": format!("{base_url}/v1/Fleets/{}", self.sid),
            "data_enabled": true,
            "data_limit": 250,
            "data_metering": "payg",
            "sms_commands_enabled": false,
            "sms_commands_url": null,
            "sms_commands_method": "POST",
            "network_access_profile_sid": profile,
            "ip_commands_url": null,
            "ip_commands_method": "POST",
        })
    }
}
