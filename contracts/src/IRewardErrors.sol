// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Errors of the tokenweave reward contracts
/// @notice Every revert of RewardDistributor uses one of these, so callers can tell them apart.
interface IRewardErrors {
    /// @notice A root was posted for an epoch that does not come after the latest one.
    /// @param epoch The epoch of the rejected root.
    /// @param latest The latest epoch already posted.
    error Reward__EpochNotIncreasing(uint64 epoch, uint64 latest);

    /// @notice A root of zero was posted.
    error Reward__EmptyRoot();

    /// @notice No root has been posted yet, so nothing can be claimed.
    error Reward__NoRoot();

    /// @notice The proof does not show (account, cumulativeAmount) in the latest root.
    error Reward__InvalidProof();

    /// @notice The account has already claimed everything up to `cumulativeAmount`.
    /// @param account The claiming account.
    /// @param cumulativeAmount The cumulative amount in the leaf.
    /// @param claimed What the account has already been paid.
    error Reward__NothingToClaim(address account, uint256 cumulativeAmount, uint256 claimed);

    /// @notice An address argument was zero.
    error Reward__ZeroAddress();

    /// @notice A root announced more new payouts than one epoch may mint.
    /// @param amount The epoch's increase in cumulative payouts.
    /// @param cap The most one epoch may add (`maxMintPerEpoch`).
    error Reward__MintCapExceeded(uint256 amount, uint256 cap);

    /// @notice A claim would pay more than the posted roots announced in all.
    /// @param amount What the claim would pay.
    /// @param remaining What the roots announced and claims have not yet paid.
    error Reward__AllowanceExceeded(uint256 amount, uint256 remaining);

    /// @notice A root came sooner after the previous one than the minimum interval.
    /// @param nextAllowedAt The first timestamp at which a root may be posted.
    error Reward__PostedTooSoon(uint256 nextAllowedAt);
}
