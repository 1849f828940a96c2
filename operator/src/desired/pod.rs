//! Pieces every pod template uses: the restricted security profile, probes, env, volumes.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
        PodSecurityContext, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
        SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};

/// A container of the Pod Security Standards' `restricted` profile with a read-only root.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".to_owned()]),
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

/// A pod running as `user:group` (never root), with the runtime's default seccomp profile;
/// `fs_group` owns the pod's volumes. Without `spec.global.fixedUserIds` the ids are left to the
/// platform (OpenShift's `restricted` SCC assigns them).
pub fn pod_security(
    ctx: &super::meta::Ctx<'_>,
    user: i64,
    group: i64,
    fs_group: Option<i64>,
) -> PodSecurityContext {
    if !ctx.shop.spec.global.fixed_user_ids {
        return PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                localhost_profile: None,
                type_: "RuntimeDefault".to_owned(),
            }),
            ..PodSecurityContext::default()
        };
    }
    PodSecurityContext {
        fs_group,
        fs_group_change_policy: fs_group.map(|_| "OnRootMismatch".to_owned()),
        run_as_group: Some(group),
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        seccomp_profile: Some(SeccompProfile {
            localhost_profile: None,
            type_: "RuntimeDefault".to_owned(),
        }),
        ..PodSecurityContext::default()
    }
}

pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// `GET <path>` on the container's `http` port.
pub fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

pub fn exec_probe(command: &[&str], initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|&s| s.to_owned()).collect()),
        }),
        initial_delay_seconds: (initial_delay > 0).then_some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

pub fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// An env var from a Secret's key (the Secret must exist: the pod waits for it).
pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                key: key.to_owned(),
                name: secret.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// Requests and limits of CPU and memory.
pub fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(requests.0, requests.1)),
        limits: Some(quantities(limits.0, limits.1)),
        ..ResourceRequirements::default()
    }
}
