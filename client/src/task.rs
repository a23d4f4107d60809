//! Tasks and their processes, as containerd's Go client drives them: the
//! init process of a container's task, and exec processes beside it.

use crated_core::descriptor::Descriptor;
use crated_core::tasks::{
    CheckpointTask, ExecProcess, Exit, Metric, Process as State, ProcessInfo, Stdio, UpdateTask,
};
use crated_core::Result;
use oci_spec::runtime::Process as ProcessSpec;

use crate::{spec, Client, Error};

/// A process of a task: its init (empty exec id) or an exec.
#[derive(Clone)]
pub struct Process {
    client: Client,
    container_id: String,
    exec_id: String,
}

impl Process {
    /// The task's container id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The exec id; empty for the init process.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    fn tasks(&self) -> &dyn crated_core::tasks::Tasks {
        &*self.client.services().tasks
    }

    /// Starts it; returns its pid.
    pub async fn start(&self) -> Result<u32> {
        self.tasks()
            .start(self.client.namespace(), &self.container_id, &self.exec_id)
            .await
    }

    /// Waits until it exits. Call before `start` to see a fast exit:
    /// the wait is answered from the exit whenever it happened.
    pub async fn wait(&self) -> Result<Exit> {
        self.tasks()
            .wait(self.client.namespace(), &self.container_id, &self.exec_id)
            .await
    }

    /// Signals it (with `all`, every process of the task).
    pub async fn kill(&self, signal: u32, all: bool) -> Result<()> {
        self.tasks()
            .kill(
                self.client.namespace(),
                &self.container_id,
                &self.exec_id,
                signal,
                all,
            )
            .await
    }

    /// Its state.
    pub async fn status(&self) -> Result<State> {
        self.tasks()
            .get(self.client.namespace(), &self.container_id, &self.exec_id)
            .await
    }

    /// Resizes its terminal.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.tasks()
            .resize_pty(
                self.client.namespace(),
                &self.container_id,
                &self.exec_id,
                width,
                height,
            )
            .await
    }

    /// Closes its stdin: it reads end-of-file.
    pub async fn close_io(&self) -> Result<()> {
        self.tasks()
            .close_io(self.client.namespace(), &self.container_id, &self.exec_id)
            .await
    }

    /// Deletes it (it must have exited); returns its exit.
    pub async fn delete(&self) -> Result<Exit> {
        let ns = self.client.namespace();
        if self.exec_id.is_empty() {
            self.tasks().delete(ns, &self.container_id).await
        } else {
            self.tasks()
                .delete_process(ns, &self.container_id, &self.exec_id)
                .await
        }
    }
}

/// A container's task.
#[derive(Clone)]
pub struct Task {
    init: Process,
    pid: u32,
}

impl std::ops::Deref for Task {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.init
    }
}

impl Task {
    pub(crate) fn new(client: Client, id: &str, pid: u32) -> Self {
        Self {
            init: Process {
                client,
                container_id: id.to_owned(),
                exec_id: String::new(),
            },
            pid,
        }
    }

    /// The task's (container's) id.
    pub fn id(&self) -> &str {
        &self.init.container_id
    }

    /// The init process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Freezes every process.
    pub async fn pause(&self) -> Result<()> {
        let client = &self.init.client;
        client
            .services()
            .tasks
            .pause(client.namespace(), self.id())
            .await
    }

    /// Thaws it.
    pub async fn resume(&self) -> Result<()> {
        let client = &self.init.client;
        client
            .services()
            .tasks
            .resume(client.namespace(), self.id())
            .await
    }

    /// Its processes' pids.
    pub async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        let client = &self.init.client;
        client
            .services()
            .tasks
            .pids(client.namespace(), self.id())
            .await
    }

    /// Its metrics (runc: cgroup metrics).
    pub async fn metrics(&self) -> Result<Metric> {
        let client = &self.init.client;
        let filter = format!("id=={}", self.id());
        client
            .services()
            .tasks
            .metrics(client.namespace(), &[filter])
            .await?
            .into_iter()
            .find(|m| m.id == self.id())
            .ok_or_else(|| {
                Error::NoMetrics {
                    id: self.id().to_owned(),
                }
                .into()
            })
    }

    /// Changes its resources.
    pub async fn update(&self, update: UpdateTask) -> Result<()> {
        let client = &self.init.client;
        client
            .services()
            .tasks
            .update(client.namespace(), self.id(), update)
            .await
    }

    /// Checkpoints it (runtime options as given); the descriptors written.
    pub async fn checkpoint(&self, options: CheckpointTask) -> Result<Vec<Descriptor>> {
        let client = &self.init.client;
        client
            .services()
            .tasks
            .checkpoint(client.namespace(), self.id(), options)
            .await
    }

    /// Adds exec process `exec_id` running `process` with the caller's
    /// `stdio`; it is created, not started.
    pub async fn exec(
        &self,
        exec_id: &str,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Process> {
        let client = &self.init.client;
        let request = ExecProcess {
            exec_id: exec_id.to_owned(),
            stdio,
            terminal: process.terminal().unwrap_or(false),
            spec: Some(spec::process_to_any(process)?),
        };
        client
            .services()
            .tasks
            .exec(client.namespace(), self.id(), request)
            .await?;
        Ok(Process {
            client: client.clone(),
            container_id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        })
    }

    /// The exec process `exec_id` of this task.
    pub fn process(&self, exec_id: &str) -> Process {
        Process {
            client: self.init.client.clone(),
            container_id: self.id().to_owned(),
            exec_id: exec_id.to_owned(),
        }
    }
}
