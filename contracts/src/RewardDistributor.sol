// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IRewardErrors} from "./IRewardErrors.sol";
import {NodeStaking} from "./NodeStaking.sol";
import {RewardToken} from "./RewardToken.sol";

/// @title tokenweave reward distributor
/// @notice The coordinator posts one Merkle root per epoch over (operator, cumulative amount)
///         leaves; an operator claims the difference between its cumulative amount and what it
///         has already been paid. Leaves use OpenZeppelin StandardMerkleTree encoding,
///         keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))), so the
///         standard tools build proofs.
///
///         Minting is bounded twice: the token's supply cap, and a per-epoch cap here. Each root
///         states `amount`, its epoch's increase in total cumulative payouts, refused above
///         `maxMintPerEpoch`; the amounts add to an allowance that claims draw down, so a
///         stolen poster key mints at most `maxMintPerEpoch` per root, and at most one root
///         per `minPostInterval` seconds. The admin key (DEFAULT_ADMIN_ROLE) sets the cap and
///         grants roles; it does not post.
///
///         The distributor creates the network's NodeStaking contract in its constructor, so its
///         address follows from the distributor's (the CREATE address of the distributor at
///         nonce 1) and clients that know the distributor find it without another lookup.
contract RewardDistributor is AccessControl, IRewardErrors {
    /// @notice Role allowed to post roots (the poster key).
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    /// @dev The token paid out; this contract holds its MINTER_ROLE.
    RewardToken private immutable _token;
    /// @dev The latest epoch posted; 0 before the first.
    uint64 private _latestEpoch;
    /// @dev The root of `_latestEpoch`: every claim is checked against it alone.
    bytes32 private _latestRoot;
    /// @dev What each account has been paid so far (its cumulative amount at its last claim).
    mapping(address account => uint256 amount) private _claimed;
    /// @dev The staking contract created with this distributor.
    NodeStaking private immutable _staking;
    /// @dev The least time between two roots, in seconds.
    uint64 private immutable _minPostInterval;
    /// @dev When the latest root was posted.
    uint64 private _latestPostedAt;
    /// @dev The most one root may add to the allowance.
    uint256 private _maxMintPerEpoch;
    /// @dev The sum of every root's amount.
    uint256 private _allotted;
    /// @dev The sum of every claim's payment.
    uint256 private _paid;

    /// @notice A root was posted.
    /// @param epoch The epoch it closes.
    /// @param root The Merkle root of the cumulative amounts up to that epoch.
    /// @param amount The epoch's increase in total cumulative payouts.
    event RootPosted(uint64 indexed epoch, bytes32 root, uint256 amount);

    /// @notice The admin changed the per-epoch mint cap.
    /// @param previous The cap before.
    /// @param cap The cap now.
    event MaxMintPerEpochChanged(uint256 previous, uint256 cap);

    /// @notice An operator was paid.
    /// @param account The operator.
    /// @param amount What this claim paid.
    /// @param cumulativeAmount Everything the operator has been paid so far.
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);

    /// @param token_ The reward token; this contract needs its MINTER_ROLE.
    /// @param admin Receives DEFAULT_ADMIN_ROLE here and on the staking contract.
    /// @param poster Receives COORDINATOR_ROLE here and SLASHER_ROLE on the staking contract.
    /// @param maxMintPerEpoch_ The most one root may announce.
    /// @param minPostInterval_ The least time between two roots, in seconds (0: no limit).
    /// @param treasury Receives slashed stake (zero: it is burned).
    /// @param unbondingDelay Seconds unstaked tokens stay slashable before they can be withdrawn.
    constructor(
        RewardToken token_,
        address admin,
        address poster,
        uint256 maxMintPerEpoch_,
        uint64 minPostInterval_,
        address treasury,
        uint64 unbondingDelay
    ) {
        if (address(token_) == address(0) || admin == address(0) || poster == address(0)) {
            revert Reward__ZeroAddress();
        }
        _token = token_;
        _maxMintPerEpoch = maxMintPerEpoch_;
        _minPostInterval = minPostInterval_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(COORDINATOR_ROLE, poster);
        _staking = new NodeStaking(IERC20(address(token_)), admin, poster, treasury, unbondingDelay);
    }

    /// @notice Post the root of `epoch`; epochs strictly increase, at most one root per
    ///         `minPostInterval` seconds.
    /// @param epoch The epoch the root closes.
    /// @param root The Merkle root over (account, cumulative amount) leaves.
    /// @param amount The epoch's increase in total cumulative payouts: the sum of the leaves
    ///        minus the sum of the previous root's; at most `maxMintPerEpoch`.
    function postRoot(uint64 epoch, bytes32 root, uint256 amount)
        external
        onlyRole(COORDINATOR_ROLE)
    {
        if (epoch <= _latestEpoch) revert Reward__EpochNotIncreasing(epoch, _latestEpoch);
        if (root == bytes32(0)) revert Reward__EmptyRoot();
        if (amount > _maxMintPerEpoch) revert Reward__MintCapExceeded(amount, _maxMintPerEpoch);
        uint256 nextAllowedAt = uint256(_latestPostedAt) + _minPostInterval;
        if (_latestEpoch != 0 && block.timestamp < nextAllowedAt) {
            revert Reward__PostedTooSoon(nextAllowedAt);
        }
        _latestEpoch = epoch;
        _latestRoot = root;
        _latestPostedAt = uint64(block.timestamp);
        _allotted += amount;
        emit RootPosted(epoch, root, amount);
    }

    /// @notice Set the most one root may announce.
    /// @param cap The new cap, in the token's smallest unit.
    function setMaxMintPerEpoch(uint256 cap) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 previous = _maxMintPerEpoch;
        _maxMintPerEpoch = cap;
        emit MaxMintPerEpochChanged(previous, cap);
    }

    /// @notice Pay `account` what its leaf in the latest root owes beyond what it was paid.
    /// @dev Anyone may submit the claim; the tokens always go to `account`. A claim that would
    ///      pay nothing (the leaf was claimed already) reverts with Reward__NothingToClaim rather
    ///      than succeeding with 0, so a wasted transaction is visible to the sender.
    /// @param account The operator.
    /// @param cumulativeAmount The operator's cumulative amount in the latest root.
    /// @param proof The Merkle proof of the leaf.
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof) external {
        if (_latestRoot == bytes32(0)) revert Reward__NoRoot();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, _latestRoot, leaf)) revert Reward__InvalidProof();
        uint256 paid = _claimed[account];
        if (cumulativeAmount <= paid) revert Reward__NothingToClaim(account, cumulativeAmount, paid);
        _pay(account, cumulativeAmount - paid, cumulativeAmount);
    }

    /// @notice The latest epoch posted (0 before the first).
    function latestEpoch() external view returns (uint64) {
        return _latestEpoch;
    }

    /// @notice The latest root posted (zero before the first).
    function latestRoot() external view returns (bytes32) {
        return _latestRoot;
    }

    /// @notice What `account` has been paid so far.
    /// @param account The operator.
    function claimed(address account) external view returns (uint256) {
        return _claimed[account];
    }

    /// @notice The reward token.
    function token() external view returns (RewardToken) {
        return _token;
    }

    /// @notice The staking contract created with this distributor.
    function staking() external view returns (NodeStaking) {
        return _staking;
    }

    /// @notice The most one root may announce.
    function maxMintPerEpoch() external view returns (uint256) {
        return _maxMintPerEpoch;
    }

    /// @notice The least time between two roots, in seconds.
    function minPostInterval() external view returns (uint64) {
        return _minPostInterval;
    }

    /// @notice What the posted roots announced and claims have not yet paid: the most that
    ///         can still be minted before the next root.
    function unclaimedAllowance() external view returns (uint256) {
        return _allotted - _paid;
    }

    /// @dev Every payout passes through here: check the allowance, record, announce, then mint
    ///      (the only external call, made last).
    /// @param account The operator.
    /// @param amount What this claim pays.
    /// @param cumulativeAmount The operator's cumulative amount after it.
    function _pay(address account, uint256 amount, uint256 cumulativeAmount) private {
        uint256 remaining = _allotted - _paid;
        if (amount > remaining) revert Reward__AllowanceExceeded(amount, remaining);
        _paid += amount;
        _claimed[account] = cumulativeAmount;
        emit Claimed(account, amount, cumulativeAmount);
        _token.mint(account, amount);
    }
}
