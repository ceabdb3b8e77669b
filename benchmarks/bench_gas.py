"""Gas of settling rewards by epoch root, against one payout transaction per job.

    python benchmarks/bench_gas.py

On the embedded chain (py-evm, prague), for 10, 100 and 1,000 operators: the gas of posting an
epoch root and of one operator's claim (the first ones, which create storage, and later ones),
beside the naive design in which every job pays its operator with its own token transaction.
Ratios are per operator per epoch, for operators that run 1, 10 or 100 jobs an epoch. Then the
gas of staking: approve and stake, unstake, withdraw after the delay, and a slash.
"""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from tokenweave.contracts import (
    EmbeddedChain,
    NetworkTerms,
    RewardContracts,
    RewardTree,
    Signer,
    StakingContract,
    deploy_rewards,
)

TOKEN = 10**18


def operator_addresses(n: int) -> list[str]:
    """Fixed addresses, so that roots, proofs and their calldata gas are the same every run."""
    return [to_checksum_address(keccak(text=f"operator {i}")[12:]) for i in range(n)]


def measure(operators: int) -> dict[str, int]:
    chain = EmbeddedChain()
    admin, coordinator = Signer(chain, chain.dev_keys[0]), Signer(chain, chain.dev_keys[1])
    contracts = RewardContracts(chain, deploy_rewards(admin, coordinator.address))
    addresses = operator_addresses(operators)
    first = RewardTree({a: (i + 1) * TOKEN for i, a in enumerate(addresses)})
    total = sum(first.amounts.values())
    tx_hash, _ = contracts.post_root(coordinator, 1, first.root, total)
    post = int(chain.w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
    claimant = addresses[operators // 2]
    claim_first = contracts.claim(
        coordinator, claimant, first.amounts[claimant.lower()], first.proof(claimant)
    )
    second = RewardTree({a: (i + 2) * TOKEN for i, a in enumerate(addresses)})
    tx_hash, _ = contracts.post_root(coordinator, 2, second.root, operators * TOKEN)
    post_again = int(chain.w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
    claim_again = contracts.claim(
        coordinator, claimant, second.amounts[claimant.lower()], second.proof(claimant)
    )
    # The naive design: a mint (payout) transaction per job, to an operator paid before.
    minter = contracts.token.functions.MINTER_ROLE().call()
    admin.send(
        dict(
            contracts.token.functions.grantRole(minter, coordinator.address).build_transaction(
                {"from": admin.address}
            )
        )
    )
    payouts = []
    for address in addresses[:2]:
        for _ in range(2):
            tx = contracts.token.functions.mint(address, TOKEN).build_transaction(
                {"from": coordinator.address}
            )
            payouts.append(int(coordinator.send(dict(tx))["gasUsed"]))
    return {
        "post_first": post,
        "post": post_again,
        "claim_first": int(claim_first["gasUsed"]),
        "claim_again": int(claim_again["gasUsed"]),
        "payout_new": payouts[0],
        "payout_repeat": payouts[1],
    }


def measure_staking() -> dict[str, int]:
    """Gas of each staking step for one operator who earned 10 TWV."""
    chain = EmbeddedChain()
    admin, poster = Signer(chain, chain.dev_keys[0]), Signer(chain, chain.dev_keys[1])
    terms = NetworkTerms(unbonding_delay_s=60)
    contracts = RewardContracts(chain, deploy_rewards(admin, poster.address, terms))
    staking = StakingContract(contracts)
    operator = Signer(chain, chain.dev_keys[2])
    tree = RewardTree({operator.address: 10 * TOKEN})
    contracts.post_root(poster, 1, tree.root, 10 * TOKEN)
    contracts.claim(operator, operator.address, 10 * TOKEN, tree.proof(operator.address))
    approve = staking.token.functions.approve(staking.address, 10 * TOKEN).build_transaction(
        {"from": operator.address}
    )
    gas = {"approve": int(operator.send(dict(approve))["gasUsed"])}
    gas["stake_first"] = int(staking.stake(operator, 4 * TOKEN)["gasUsed"])
    gas["stake"] = int(staking.stake(operator, 4 * TOKEN)["gasUsed"])
    gas["unstake"] = int(staking.request_unstake(operator, 4 * TOKEN)["gasUsed"])
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    tester.time_travel(int(tester.get_block_by_number("pending")["timestamp"]) + 61)
    gas["withdraw"] = int(staking.withdraw(operator)["gasUsed"])
    gas["slash"] = int(staking.slash(poster, operator.address, TOKEN, b"evidence")["gasUsed"])
    return gas


def main() -> None:
    jobs = (1, 10, 100)
    print("gas on the embedded chain (py-evm, prague); steady state = not the first epoch or claim")
    print(
        f"{'operators':>9} {'1st root':>9} {'root':>7} {'1st claim':>10} {'claim':>7}"
        f" {'per-job tx':>11}  ours / naive per operator-epoch at "
        + ", ".join(f"{j} job{'s' * (j > 1)}" for j in jobs)
    )
    for operators in (10, 100, 1000):
        g = measure(operators)
        # Ours: a share of the root plus one claim per operator per epoch (claiming less often
        # only helps). Naive: one payout transaction per job.
        ours = g["post"] / operators + g["claim_again"]
        ratios = "  ".join(f"{ours / (j * g['payout_repeat']):>6.3f}" for j in jobs)
        print(
            f"{operators:>9} {g['post_first']:>9,} {g['post']:>7,} {g['claim_first']:>10,}"
            f" {g['claim_again']:>7,} {g['payout_repeat']:>11,}  {ratios}"
        )
    stake = measure_staking()
    print("\nstaking gas: " + ", ".join(f"{step} {gas:,}" for step, gas in stake.items()))


if __name__ == "__main__":
    main()
