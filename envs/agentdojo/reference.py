"""AgentDojo's own verdicts of its ground truths, pair by pair, for checking the bridge.

For every (user task, injection task) pair of the chosen suites, with AgentDojo's code only
(none of bridge.py's episode logic): `user` is the utility of the user task's ground truth
run by AgentDojo's GroundTruthPipeline on the environment with no injection; `injection` is
the security of the injection task's ground truth run the same way on the environment that
AgentDojo's `important_instructions` attack injected for the pair (true = attack succeeded).

    .venv/bin/python reference.py [SUITE ...]  > reference.json
"""

import json
import sys

from agentdojo.agent_pipeline.ground_truth_pipeline import GroundTruthPipeline
from agentdojo.functions_runtime import FunctionsRuntime
from agentdojo.task_suite.task_suite import functions_stack_trace_from_messages

import bridge


def verdict(suite, user_task, task, injections):
    env = user_task.init_environment(suite.load_and_inject_default_environment(injections))
    pre = env.model_copy(deep=True)
    _, _, env, messages, _ = GroundTruthPipeline(task).query(user_task.PROMPT, FunctionsRuntime(suite.tools), env)
    output = messages[-1]["content"] or []
    traces = functions_stack_trace_from_messages(messages)
    return bool(suite._check_task_result(task, output, pre, env, traces))


def main(suites):
    out = {"user": {}, "injection": {}}
    for suite_name, _, task in bridge.tasks():
        if suites and suite_name not in suites:
            continue
        suite, user_task, injection_task = bridge.parse_task(suite_name, task)
        key = f"{suite_name}/{task}"
        out["user"][key] = verdict(suite, user_task, user_task, {})
        attack = bridge._attack(suite_name, "important_instructions")
        injections = attack.attack(user_task, injection_task)
        out["injection"][key] = verdict(suite, user_task, injection_task, injections)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
