//! The fake's catalogue: Hetzner's locations, datacenters, server types (with
//! net prices in EUR per location) and public system images, as JSON in the
//! shapes of the OpenAPI spec. Prices follow Hetzner's published list prices
//! (hourly = monthly / 624, as the API quotes them); the fake is not a price
//! source, only a stand-in that answers in the real format.

use serde_json::{json, Value};

pub struct Location {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    pub network_zone: &'static str,
    pub datacenter: &'static str,
}

pub const LOCATIONS: &[Location] = &[
    Location {
        id: 1,
        name: "fsn1",
        description: "Falkenstein DC Park 1",
        city: "Falkenstein",
        country: "DE",
        latitude: 50.47612,
        longitude: 12.370071,
        network_zone: "eu-central",
        datacenter: "fsn1-dc14",
    },
    Location {
        id: 2,
        name: "nbg1",
        description: "Nuremberg DC Park 1",
        city: "Nuremberg",
        country: "DE",
        latitude: 49.452102,
        longitude: 11.076665,
        network_zone: "eu-central",
        datacenter: "nbg1-dc3",
    },
    Location {
        id: 3,
        name: "hel1",
        description: "Helsinki DC Park 1",
        city: "Helsinki",
        country: "FI",
        latitude: 60.169855,
        longitude: 24.938379,
        network_zone: "eu-central",
        datacenter: "hel1-dc2",
    },
    Location {
        id: 4,
        name: "ash",
        description: "Ashburn, VA",
        city: "Ashburn, VA",
        country: "US",
        latitude: 39.045821,
        longitude: -77.487073,
        network_zone: "us-east",
        datacenter: "ash-dc1",
    },
    Location {
        id: 5,
        name: "hil",
        description: "Hillsboro, OR",
        city: "Hillsboro, OR",
        country: "US",
        latitude: 45.54222,
        longitude: -122.951924,
        network_zone: "us-west",
        datacenter: "hil-dc1",
    },
    Location {
        id: 6,
        name: "sin",
        description: "Singapore",
        city: "Singapore",
        country: "SG",
        latitude: 1.283333,
        longitude: 103.833333,
        network_zone: "ap-southeast",
        datacenter: "sin-dc1",
    },
];

pub struct ServerType {
    pub id: u64,
    pub name: &'static str,
    pub cores: u32,
    pub memory: f64,
    pub disk: u32,
    pub cpu_type: &'static str,
    /// Net monthly price in EUR (EU locations); US and Singapore cost more.
    pub monthly_eur: f64,
    /// `x86` or `arm` (Ampere, the cax types): images must match it.
    pub architecture: &'static str,
}

pub const SERVER_TYPES: &[ServerType] = &[
    ServerType {
        id: 101,
        name: "cx23",
        cores: 2,
        memory: 4.0,
        disk: 40,
        cpu_type: "shared",
        monthly_eur: 5.49,
        architecture: "x86",
    },
    ServerType {
        id: 102,
        name: "cx33",
        cores: 4,
        memory: 8.0,
        disk: 80,
        cpu_type: "shared",
        monthly_eur: 8.49,
        architecture: "x86",
    },
    ServerType {
        id: 103,
        name: "cx43",
        cores: 8,
        memory: 16.0,
        disk: 160,
        cpu_type: "shared",
        monthly_eur: 15.49,
        architecture: "x86",
    },
    ServerType {
        id: 104,
        name: "cx53",
        cores: 16,
        memory: 32.0,
        disk: 320,
        cpu_type: "shared",
        monthly_eur: 27.49,
        architecture: "x86",
    },
    ServerType {
        id: 111,
        name: "ccx13",
        cores: 2,
        memory: 8.0,
        disk: 80,
        cpu_type: "dedicated",
        monthly_eur: 43.99,
        architecture: "x86",
    },
    ServerType {
        id: 112,
        name: "ccx23",
        cores: 4,
        memory: 16.0,
        disk: 160,
        cpu_type: "dedicated",
        monthly_eur: 85.99,
        architecture: "x86",
    },
    ServerType {
        id: 113,
        name: "ccx33",
        cores: 8,
        memory: 32.0,
        disk: 240,
        cpu_type: "dedicated",
        monthly_eur: 138.49,
        architecture: "x86",
    },
    ServerType {
        id: 114,
        name: "ccx43",
        cores: 16,
        memory: 64.0,
        disk: 360,
        cpu_type: "dedicated",
        monthly_eur: 276.49,
        architecture: "x86",
    },
    ServerType {
        id: 115,
        name: "ccx53",
        cores: 32,
        memory: 128.0,
        disk: 600,
        cpu_type: "dedicated",
        monthly_eur: 552.49,
        architecture: "x86",
    },
    ServerType {
        id: 116,
        name: "ccx63",
        cores: 48,
        memory: 192.0,
        disk: 960,
        cpu_type: "dedicated",
        monthly_eur: 828.49,
        architecture: "x86",
    },
    ServerType {
        id: 121,
        name: "cax11",
        cores: 2,
        memory: 4.0,
        disk: 40,
        cpu_type: "shared",
        monthly_eur: 3.79,
        architecture: "arm",
    },
    ServerType {
        id: 122,
        name: "cax21",
        cores: 4,
        memory: 8.0,
        disk: 80,
        cpu_type: "shared",
        monthly_eur: 6.49,
        architecture: "arm",
    },
];

/// Hetzner's public system images. A name exists once per architecture
/// (different ids); a server created by name gets its type's architecture.
pub const IMAGES: &[(u64, &str, &str, &str, &str, &str)] = &[
    // (id, name, description, os_flavor, os_version, architecture)
    (
        161547269,
        "ubuntu-24.04",
        "Ubuntu 24.04",
        "ubuntu",
        "24.04",
        "x86",
    ),
    (
        161547270,
        "ubuntu-24.04",
        "Ubuntu 24.04",
        "ubuntu",
        "24.04",
        "arm",
    ),
    (
        103908070,
        "ubuntu-22.04",
        "Ubuntu 22.04",
        "ubuntu",
        "22.04",
        "x86",
    ),
    (
        103908071,
        "ubuntu-22.04",
        "Ubuntu 22.04",
        "ubuntu",
        "22.04",
        "arm",
    ),
    (114690387, "debian-12", "Debian 12", "debian", "12", "x86"),
    (114690389, "debian-12", "Debian 12", "debian", "12", "arm"),
    (202005010, "debian-13", "Debian 13", "debian", "13", "x86"),
    (222974582, "fedora-42", "Fedora 42", "fedora", "42", "x86"),
    (76766499, "rocky-9", "Rocky Linux 9", "rocky", "9", "x86"),
    (76766469, "alma-9", "AlmaLinux 9", "alma", "9", "x86"),
];

pub const CREATED: &str = "2016-01-30T23:55:00+00:00";

pub fn location(name: &str) -> Option<&'static Location> {
    LOCATIONS.iter().find(|l| l.name == name)
}

pub fn server_type(name: &str) -> Option<&'static ServerType> {
    SERVER_TYPES.iter().find(|t| t.name == name)
}

/// Net (monthly, hourly) EUR of a type at a location: outside the EU Hetzner
/// charges a surcharge (here a flat 20%, an approximation).
pub fn price(t: &ServerType, loc: &Location) -> (f64, f64) {
    let monthly = if loc.network_zone == "eu-central" {
        t.monthly_eur
    } else {
        (t.monthly_eur * 1.2 * 100.0).round() / 100.0
    };
    (monthly, monthly / 624.0)
}

fn money(net: f64) -> Value {
    json!({"net": format!("{net:.10}"), "gross": format!("{:.10}", net * 1.19)})
}

pub fn location_json(l: &Location) -> Value {
    json!({
        "id": l.id, "name": l.name, "description": l.description, "country": l.country, "city": l.city,
        "latitude": l.latitude, "longitude": l.longitude, "network_zone": l.network_zone,
    })
}

pub fn datacenter_json(l: &Location) -> Value {
    let ids: Vec<u64> = SERVER_TYPES.iter().map(|t| t.id).collect();
    json!({
        "id": l.id, "name": l.datacenter, "description": format!("{} DC", l.city),
        "location": location_json(l),
        "server_types": {"supported": ids, "available": ids, "available_for_migration": ids},
    })
}

pub fn prices_json(t: &ServerType) -> Vec<Value> {
    LOCATIONS
        .iter()
        .map(|l| {
            let (monthly, hourly) = price(t, l);
            json!({
                "location": l.name, "price_hourly": money(hourly), "price_monthly": money(monthly),
                "included_traffic": if l.network_zone == "eu-central" { 21_990_232_555_520u64 } else { 1_099_511_627_776 },
                "price_per_tb_traffic": money(1.0),
            })
        })
        .collect()
}

pub fn server_type_json(t: &ServerType) -> Value {
    json!({
        "id": t.id, "name": t.name,
        "description": format!("{} {}", t.name.to_uppercase(), if t.cpu_type == "dedicated" { "Dedicated CPU" } else { "Shared CPU" }),
        "category": if t.cpu_type == "dedicated" { "dedicated_cpu" } else { "cost_optimized" },
        "cores": t.cores, "memory": t.memory, "disk": t.disk, "deprecated": false, "deprecation": null,
        "prices": prices_json(t), "storage_type": "local", "cpu_type": t.cpu_type, "architecture": t.architecture,
        "locations": LOCATIONS.iter().map(|l| json!({"id": l.id, "name": l.name, "deprecation": null})).collect::<Vec<_>>(),
    })
}

pub fn image_json(img: &(u64, &str, &str, &str, &str, &str)) -> Value {
    let (id, name, description, flavor, version, architecture) = *img;
    json!({
        "id": id, "type": "system", "status": "available", "name": name, "description": description,
        "image_size": null, "disk_size": 5, "created": CREATED, "created_from": null, "bound_to": null,
        "os_flavor": flavor, "os_version": version, "rapid_deploy": true, "protection": {"delete": false},
        "deprecated": null, "deleted": null, "labels": {}, "architecture": architecture,
    })
}

pub fn pricing_json() -> Value {
    let primary = |t: &str, monthly: f64| {
        json!({"type": t, "prices": LOCATIONS.iter().map(|l| json!({
            "location": l.name, "price_hourly": money(monthly / 730.0), "price_monthly": money(monthly)
        })).collect::<Vec<_>>()})
    };
    json!({"pricing": {
        "currency": "EUR",
        "vat_rate": "19.00",
        "image": {"price_per_gb_month": money(0.011)},
        "floating_ip": {"price_monthly": money(3.0)},
        "floating_ips": [
            {"type": "ipv4", "prices": LOCATIONS.iter().map(|l| json!({"location": l.name, "price_monthly": money(3.0)})).collect::<Vec<_>>()},
            {"type": "ipv6", "prices": LOCATIONS.iter().map(|l| json!({"location": l.name, "price_monthly": money(3.0)})).collect::<Vec<_>>()},
        ],
        "primary_ips": [primary("ipv4", 0.5), primary("ipv6", 0.0)],
        "server_backup": {"percentage": "20.00"},
        "volume": {"price_per_gb_month": money(0.044)},
        "load_balancer_types": [],
        "server_types": SERVER_TYPES.iter().map(|t| json!({"id": t.id, "name": t.name, "prices": prices_json(t)})).collect::<Vec<_>>(),
    }})
}
