"""The adapter trusts the CLB it found for a spec (no DescribeLoadBalancers at every
reconcile) until a sync of it fails or it deletes it; then it asks the cloud again."""

from __future__ import annotations

from directlb.cloud import DesiredLoadBalancer
from tests.conftest import EmulatorFactory
from tests.integration.cloud_support import INSTANCES, adapter, calls, ledger_summary, spec


async def test_a_found_load_balancer_is_trusted_until_a_sync_of_it_fails(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await make_emulator(instances=dict(INSTANCES), rate_limit=0, time_scale=0.0)
    async with adapter(emulator) as clb, adapter(emulator) as someone_else:
        created = await clb.ensure_load_balancer(spec("web"))
        # One we just created is looked for once more (a duplicate may still turn up), then
        # trusted.
        assert (await clb.ensure_load_balancer(spec("web"))).lb_id == created.lb_id
        since = (await ledger_summary(emulator))["last"]
        assert (await clb.ensure_load_balancer(spec("web"))).lb_id == created.lb_id
        assert calls(await ledger_summary(emulator, since=since)) == {}

        # Deleted behind our back: the next sync fails (and forgets it), so the next ensure
        # asks the cloud and creates it again.
        await someone_else.delete_load_balancer(created.lb_id)
        [result] = await clb.sync([DesiredLoadBalancer(created.lb_id, ())])
        assert result.error is not None
        again = await clb.ensure_load_balancer(spec("web"))
        assert again.lb_id != created.lb_id

        # Our own deletion forgets it at once.
        await clb.delete_load_balancer(again.lb_id)
        assert (await clb.ensure_load_balancer(spec("web"))).lb_id not in {
            created.lb_id,
            again.lb_id,
        }
