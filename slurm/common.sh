# shellcheck shell=bash
# Shared by the slurm/*.sbatch scripts (sourced; not a job script itself).
#
# Environment (all optional):
#   CORD_HOME       the cord checkout (default: the directory sbatch was called from)
#   CORD_BUILD_DIR  its build folder (default: build), holding the `cord` binary
#   CORD_LAUNCHER   srun (default: srun --mpi=pmix, one task per rank) or mpirun (Open MPI's
#                   mpirun inside the allocation; it reads the node list from Slurm)
#   CORD_REQUEUE    1 (default): when cord exits with 75 ("please requeue": a signal or
#                   --max-wall-minutes made it checkpoint and stop), requeue this job;
#                   0: end the job with exit code 75 instead
#
# Ranks, sizes and layouts come from MPI inside cord; the SLURM_* variables are only logged.

CORD_HOME=${CORD_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
CORD_BIN=${CORD_BIN:-$CORD_HOME/${CORD_BUILD_DIR:-build}/cord}
CORD_EXIT_REQUEUE=75  # cord's ExitCode::kRequeue (README, "Exit codes")

cord_log() { printf '[slurm %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

cord_fail() {
  cord_log "ERROR: $*"
  exit 2
}

# One line with what Slurm gave this job; SLURM_RESTART_COUNT > 0 marks a requeued rerun.
cord_log_allocation() {
  cord_log "job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ (array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID})}" \
    "on ${SLURM_JOB_NUM_NODES:-?} node(s) ${SLURM_JOB_NODELIST:-?}: ${SLURM_NTASKS:-?} task(s)," \
    "${SLURM_CPUS_PER_TASK:-1} cpu(s) per task${SLURM_GPUS_ON_NODE:+, ${SLURM_GPUS_ON_NODE} gpu(s) per node};" \
    "SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}; cord ${CORD_BIN}"
}

cord_check_binary() {
  [ -x "$CORD_BIN" ] || cord_fail "no cord binary at $CORD_BIN (set CORD_HOME to the checkout, or build it: ./setup.sh build)"
}

# Runs `cord ARGS...` as one job step and returns its exit code. The step runs in the
# background while this shell waits, because bash runs traps only between commands: so a
# SIGUSR1 (from #SBATCH --signal=B:USR1@T or `scancel --batch --signal=USR1`) or SIGTERM
# reaching the batch shell is forwarded to the step at once. srun and mpirun pass it on to
# every rank; cord finishes its step, checkpoints and exits with 75.
# CORD_STEP_RANKS=N runs the step on N tasks of the allocation (default: all of them).
cord_step() {
  local -a launcher
  case "${CORD_LAUNCHER:-srun}" in
    srun) launcher=(srun --mpi=pmix --kill-on-bad-exit=1 ${CORD_STEP_RANKS:+--ntasks=$CORD_STEP_RANKS}) ;;
    mpirun) launcher=(mpirun ${CORD_STEP_RANKS:+-n $CORD_STEP_RANKS}) ;;
    *) cord_fail "CORD_LAUNCHER=${CORD_LAUNCHER} is neither srun nor mpirun" ;;
  esac
  cord_log "step: ${launcher[*]} $(basename "$CORD_BIN") $*"
  "${launcher[@]}" "$CORD_BIN" "$@" &
  local step=$!
  trap 'cord_log "SIGUSR1: forwarding it to the job step"; kill -USR1 '"$step"' 2>/dev/null' USR1
  trap 'cord_log "SIGTERM: forwarding it to the job step"; kill -TERM '"$step"' 2>/dev/null' TERM
  # `wait` returns early (status > 128) when a trapped signal arrives; keep waiting while
  # the step lives. Once it has exited, `wait` returned its status.
  local rc=0
  while true; do
    wait "$step" && rc=0 || rc=$?
    kill -0 "$step" 2>/dev/null || break
  done
  if [ "$rc" -gt 128 ]; then  # interrupted just as the step ended: ask for its own status
    local again=0
    wait "$step" && again=0 || again=$?
    [ "$again" -eq 127 ] || rc=$again
  fi
  trap - USR1 TERM
  cord_log "step exited with $rc"
  return "$rc"
}

# Whether the controller has already requeued this job: `scontrol requeue` by an admin and
# preemption with requeue send the job SIGTERM and put it back in the queue themselves
# (JobState REQUEUED or PENDING, or a Restarts count above this run's SLURM_RESTART_COUNT).
cord_already_requeued() {
  local info state restarts
  info=$(scontrol show job -o "${SLURM_JOB_ID}" 2>/dev/null) || return 1
  state=$(printf '%s\n' "$info" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  restarts=$(printf '%s\n' "$info" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
  CORD_JOB_STATE="JobState=${state:-unknown} Restarts=${restarts:-unknown}"
  case "$state" in REQUEUED|REQUEUE_HOLD|REQUEUE_FED|PENDING) return 0 ;; esac
  [ -n "$restarts" ] && [ "$restarts" -gt "${SLURM_RESTART_COUNT:-0}" ]
}

# The end of a job whose last step returned `rc`: 75 requeues the job (unless
# CORD_REQUEUE=0) — or logs that Slurm already did; the rerun resumes from the newest
# checkpoint (--resume auto).
cord_finish() {
  local rc=$1
  if [ "$rc" -eq "$CORD_EXIT_REQUEUE" ] && [ "${CORD_REQUEUE:-1}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    if cord_already_requeued; then
      cord_log "cord checkpointed; Slurm has already requeued job ${SLURM_JOB_ID} (${CORD_JOB_STATE}): the rerun resumes"
      exit 0
    fi
    cord_log "cord checkpointed and asked to be requeued: scontrol requeue ${SLURM_JOB_ID}"
    if ! scontrol requeue "${SLURM_JOB_ID}"; then
      # The scheduler may have requeued the job between the check and the request.
      if cord_already_requeued; then
        cord_log "Slurm requeued job ${SLURM_JOB_ID} itself meanwhile (${CORD_JOB_STATE}): the rerun resumes"
        exit 0
      fi
      cord_fail "scontrol requeue ${SLURM_JOB_ID} failed (${CORD_JOB_STATE:-state unknown}; was the job submitted with --requeue?)"
    fi
    exit 0
  fi
  exit "$rc"
}
