//! burrow's end-to-end suite: each module drives the real `burrow` binary for one topic, numbered like
//! Podman's `test/system/NNN-topic.bats`. Support code: the `burrow_tests` library (`tests/src/lib.rs`).
//!
//! Run it with `sudo hack/test.sh` (as the unprivileged users `burrowtest` and `burrownorange`).
//! Tests whose name contains `norange_` run only as `burrownorange`, a user with no subuid range;
//! those whose name contains `asroot_` only as root (to set up what a user cannot, then run burrow
//! as `burrowtest`); all the others run only as `burrowtest`.

mod t000_harness;
mod t010_run;
mod t020_userns;
mod t030_security;
mod t040_terminal;
mod t050_lifecycle;
mod t055_labels_logs;
mod t060_exec;
mod t070_container_cmds;
mod t080_docker_alias;
mod t090_attach;
mod t100_images;
mod t110_load_save;
mod t120_store_reliability;
mod t130_system;
mod t200_network;
mod t210_run_network;
mod t220_user_networks;
mod t230_asroot_client_address;
mod t300_registry;
mod t310_registry_tls_auth;
mod t320_registry_resume_newer_helpers;
mod t350_volumes;
mod t400_systemd;
mod t410_quadlet;
mod t420_sdnotify;
mod t430_health;
mod t440_autoupdate;
mod t450_lifecycle_more;
mod t460_quadlet_volume_image;
mod t461_unit_restart;
mod t470_run_detached_early_monitor;
